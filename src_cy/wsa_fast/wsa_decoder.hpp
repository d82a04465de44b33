// The WSA decoder over one simdjson kernel's On-Demand API, which the includer names `od`.
//
// No include guard: included once per kernel, inside that kernel's namespace (wsa_kernels.cpp
// for the builtin kernel, wsa_kernel.hpp inside a target region for the others).

// A field's value as simdjson hands it over: checked by each reader through get(), never converted.
using value_result = simdjson::simdjson_result<od::value>;

class Decoder {
  public:
    Decoder(WsaMsg* m, const char* end) : m_(m), end_(end) {}

    // Returns false on a JSON-level failure (the message is then NOT_JSON).
    bool run(od::document& doc);

    // The plain path: true if the text was read without simdjson (finish() has judged it); false if the
    // On-Demand reader must read it, with a fresh Decoder and message (this one may have written to both).
    bool run_plain(const char* p, size_t len);

  private:
    WsaMsg* m_;
    const char* end_;                // end of the document (the padding follows)
    const char* invalid_ = nullptr;  // first rule broken, JSON itself being fine
    int form_ = FORM_UNKNOWN;
    unsigned seen_ = 0;
    unsigned pseen_ = 0;
    bool payload_is_object_ = false;
    Slot from_{}, to_{}, type_{}, id_{}, method_{}, result_{}, receipt_{}, code_{};
    bool params_bad_ = false;

    void fail(const char* why) {
        if (!invalid_) invalid_ = why;
    }

    // raw_json() does not consume a scalar, and On-Demand's later skip of it is lenient
    // ({"a":"b":1} reads "b" as a key): a scalar field's raw span, which runs up to the
    // next structural character, must be followed by the field's ',' or '}'.
    bool ends_field(std::string_view raw) const {
        const char* next = raw.data() + raw.size();
        return next < end_ && (*next == ',' || *next == '}');
    }

    // Consume any field value, checking its grammar; false if it is not JSON.
    bool skip(value_result field_value, int depth) {
        od::value v;
        if (field_value.get(v)) return false;
        return skip(v, depth);
    }

    bool skip(od::value v, int depth) {
        od::json_type t;
        if (v.type().get(t)) return false;
        std::string_view raw;
        if (v.raw_json().get(raw)) return false;
        if (t != od::json_type::object && t != od::json_type::array && !ends_field(raw)) return false;
        return SpanValidator(raw.data(), raw.size()).value_then_end(depth);
    }

    // Read a value that should be a string (or null where allowed) into a slot.
    bool read_scalar(value_result field_value, int depth, Slot* slot) {
        slot->present = true;
        od::value v;
        if (field_value.get(v)) return false;
        od::json_type t;
        if (v.type().get(t)) return false;
        if (t == od::json_type::string) {
            std::string_view sv;
            if (v.get_string().get(sv)) return false;
            slot->is_string = true;
            slot->s = Str{sv.data(), sv.size()};
            return true;
        }
        if (t == od::json_type::null) {
            bool is_null = false;
            if (v.is_null().get(is_null) || !is_null) return false;
            slot->is_null = true;
            return true;
        }
        return skip(v, depth);
    }

    bool read_raw(value_result field_value, int depth, Str* out, bool* is_container) {
        od::value v;
        if (field_value.get(v)) return false;
        od::json_type t;
        if (v.type().get(t)) return false;
        std::string_view raw;
        if (v.raw_json().get(raw)) return false;
        if (t != od::json_type::object && t != od::json_type::array && !ends_field(raw)) return false;
        if (!SpanValidator(raw.data(), raw.size()).value_then_end(depth)) return false;
        // raw_json of a scalar may carry trailing spaces; a container ends at its bracket.
        size_t n = raw.size();
        while (n && (raw[n - 1] == ' ' || raw[n - 1] == '\t' || raw[n - 1] == '\n' || raw[n - 1] == '\r')) n--;
        *out = Str{raw.data(), n};
        *is_container = (t == od::json_type::object || t == od::json_type::array);
        return true;
    }

    bool payload(value_result field_value);
    void finish();
    void note_readable(Field f, const Slot& s);

    // What an invalid message's answer needs (and decode's error for a valid one Python cannot hold): its id,
    // type and from, if readable. Only the first key naming each counts, as in the reference codec: its slot.
    void note_readables() {
        note_readable(F_FROM, from_);
        note_readable(F_TYPE, type_);
        note_readable(F_ID, id_);
    }

    bool plain_payload(const char*& p, const char* end);
    bool plain_scalar(const char*& p, const char* end, Slot* slot);
    bool plain_raw(const char*& p, const char* end, Str* out, bool* is_container);
};

// ---- the plain path ----
// Programs write messages as compact JSON text, keys in the order the codecs write them: no whitespace, no
// escape in the envelope, each key once. Such text is read here by plain loops into the slots the On-Demand
// reader fills, and judged by the same finish(). Whatever the On-Demand reader would read otherwise (other
// key orders, whitespace, an escape, a scalar of another type) or refuse as not JSON makes it give up and
// leave the text to that reader, so the verdict is always the reader's: the property tests hold both to
// codec_py. Every read here may run up to 16 bytes past the text: the padding after it is readable.

// The literal at p, moved past.
template <size_t N>
inline bool take(const char*& p, const char* end, const char (&lit)[N]) {
    if ((size_t)(end - p) < N - 1 || !same_bytes(p, lit)) return false;
    p += N - 1;
    return true;
}

// The key ",name": (or "name": first) of one form or the other.
template <size_t C, size_t V>
inline bool take_form(const char*& p, const char* end, bool compact, const char (&in_compact)[C],
                      const char (&in_verbose)[V]) {
    return compact ? take(p, end, in_compact) : take(p, end, in_verbose);
}

inline bool Decoder::plain_scalar(const char*& p, const char* end, Slot* slot) {
    if (p < end && *p == 'n') {
        if (!take(p, end, "null")) return false;
        slot->present = slot->is_null = true;
        return true;
    }
    if (!plain_string(p, end, &slot->s)) return false;
    slot->present = slot->is_string = true;
    return true;
}

inline bool Decoder::plain_raw(const char*& p, const char* end, Str* out, bool* is_container) {
    const char* value_end = SpanValidator(p, end - p).value_end(2);
    if (!value_end) return false;
    *out = Str{p, (size_t)(value_end - p)};
    *is_container = *p == '{' || *p == '[';
    p = value_end;
    return true;
}

// After the payload's "{": method [params], or result [receipt or code] [data], then "}".
inline bool Decoder::plain_payload(const char*& p, const char* end) {
    const bool compact = form_ == COMPACT;
    bool container = false;
    payload_is_object_ = true;
    if (take_form(p, end, compact, "\"m\":", "\"method\":")) {
        pseen_ |= 1u << P_METHOD;
        if (!plain_scalar(p, end, &method_)) return false;
        if (take_form(p, end, compact, ",\"p\":", ",\"params\":")) {
            pseen_ |= 1u << P_PARAMS;
            m_->has_params = true;
            if (!plain_raw(p, end, &m_->params, &container)) return false;
            params_bad_ = !container;
        }
    } else if (take_form(p, end, compact, "\"r\":", "\"result\":")) {
        pseen_ |= 1u << P_RESULT;
        if (!plain_scalar(p, end, &result_)) return false;
        if (compact ? take(p, end, ",\"c\":") : take(p, end, ",\"code\":")) {
            pseen_ |= 1u << (compact ? P_C : P_CODE);
            if (!plain_scalar(p, end, &code_)) return false;
        } else if (!compact && take(p, end, ",\"receipt\":")) {
            pseen_ |= 1u << P_RECEIPT;
            if (!plain_scalar(p, end, &receipt_)) return false;
        }
        if (take_form(p, end, compact, ",\"d\":", ",\"data\":")) {
            pseen_ |= 1u << P_DATA;
            m_->has_data = true;
            if (!plain_raw(p, end, &m_->data, &container)) return false;
        }
    }
    return take(p, end, "}");
}

inline bool Decoder::run_plain(const char* p, size_t len) {
    const char* end = p + len;
    if (!valid_text(p, len)) return false;
    bool compact;
    if (take(p, end, "{\"from\":")) compact = false;
    else if (take(p, end, "{\"f\":")) compact = true;
    else return false;
    form_ = compact ? COMPACT : VERBOSE;
    if (!plain_scalar(p, end, &from_) || !take_form(p, end, compact, ",\"t\":", ",\"to\":") ||
        !plain_scalar(p, end, &to_) || !take_form(p, end, compact, ",\"y\":", ",\"type\":") ||
        !plain_scalar(p, end, &type_) || !take_form(p, end, compact, ",\"i\":", ",\"id\":") ||
        !plain_scalar(p, end, &id_) || !take_form(p, end, compact, ",\"p\":{", ",\"payload\":{") ||
        !plain_payload(p, end) || !take(p, end, "}") || p != end)
        return false;
    seen_ = (1u << F_FROM) | (1u << F_TO) | (1u << F_TYPE) | (1u << F_ID) | (1u << F_PAYLOAD);
    finish();
    return true;
}

inline void Decoder::note_readable(Field f, const Slot& s) {
    if (!s.is_string) return;
    if (f == F_ID) {
        if (is_readable_id(s.s)) {
            m_->has_readable_id = true;
            m_->readable_id = s.s;
        }
    } else if (f == F_FROM) {
        m_->has_readable_from = true;
        m_->readable_from = s.s;
    } else if (f == F_TYPE) {
        Str t = s.s;
        if (eq(t, "request") || eq(t, "q")) m_->readable_type = REQUEST;
        else if (eq(t, "response") || eq(t, "r")) m_->readable_type = RESPONSE;
        else if (eq(t, "event") || eq(t, "e")) m_->readable_type = EVENT;
    }
}

inline bool Decoder::payload(value_result field_value) {
    od::value v;
    if (field_value.get(v)) return false;
    od::json_type t;
    if (v.type().get(t)) return false;
    if (t != od::json_type::object) {
        fail("payload must be an object");
        return skip(v, 1);
    }
    payload_is_object_ = true;
    od::object obj;
    if (v.get_object().get(obj)) return false;
    for (auto field : obj) {
        std::string_view key;
        if (field.unescaped_key().get(key)) return false;
        // The payload's keys must be of the envelope's form; an unknown form reads as verbose.
        PField pf = payload_field(key, form_ == COMPACT ? COMPACT : VERBOSE);
        if (pf == P_UNKNOWN) {
            fail("unknown payload key");
            if (!skip(field.value(), 2)) return false;
            continue;
        }
        if (pseen_ & (1u << pf)) {
            fail("duplicate payload key");
            if (!skip(field.value(), 2)) return false;
            continue;
        }
        pseen_ |= 1u << pf;
        bool ok = true, container = false;
        switch (pf) {
            case P_METHOD: ok = read_scalar(field.value(), 2, &method_); break;
            case P_RESULT: ok = read_scalar(field.value(), 2, &result_); break;
            case P_RECEIPT: ok = read_scalar(field.value(), 2, &receipt_); break;
            case P_CODE: case P_C: ok = read_scalar(field.value(), 2, &code_); break;
            case P_PARAMS:
                ok = read_raw(field.value(), 2, &m_->params, &container);
                m_->has_params = true;
                params_bad_ = !container;
                break;
            case P_DATA:
                ok = read_raw(field.value(), 2, &m_->data, &container);
                m_->has_data = true;
                break;
            default: break;
        }
        if (!ok) return false;
    }
    return true;
}

inline bool Decoder::run(od::document& doc) {
    od::json_type root;
    if (doc.type().get(root)) return false;
    od::object obj;
    if (root != od::json_type::object || doc.get_object().get(obj)) {
        m_->reason = "not a JSON object";
        return false;
    }
    for (auto field : obj) {
        std::string_view key;
        if (field.unescaped_key().get(key)) return false;
        int key_form;
        Field f = envelope_field(key, &key_form);
        if (f == F_UNKNOWN) {
            fail("unknown key");
            if (!skip(field.value(), 1)) return false;
            continue;
        }
        if (form_ == FORM_UNKNOWN) {
            form_ = key_form;
        } else if (form_ != key_form) {
            fail("verbose and compact keys mixed");
        }
        bool first = !(seen_ & (1u << f));
        seen_ |= 1u << f;
        if (f == F_PAYLOAD) {
            if (!first) {
                fail("duplicate key");
                if (!skip(field.value(), 1)) return false;
            } else if (!payload(field.value())) {
                return false;
            }
            continue;
        }
        Slot* slot = f == F_FROM ? &from_ : f == F_TO ? &to_ : f == F_TYPE ? &type_ : &id_;
        Slot scratch{};
        if (!read_scalar(field.value(), 1, first ? slot : &scratch)) return false;
        if (!first) fail("duplicate key");
    }
    if (!doc.at_end()) return false;
    finish();
    return true;
}

inline void Decoder::finish() {
    WsaMsg* m = m_;
    note_readables();
    m->form = form_ == COMPACT ? COMPACT : VERBOSE;
    const bool compact = m->form == COMPACT;
    if (!(from_.present && to_.present && type_.present && id_.present && (seen_ & (1u << F_PAYLOAD))))
        fail("missing field");
    // Field rules, in the reference codec's order.
    if (from_.present && !from_.is_string) fail("from must be a string");
    else if (from_.present) {
        m->from = from_.s;
        if (eq_form(from_.s, compact, "s", "server")) m->from_kind = ADDR_SERVER;
        else if (from_.s.n == 0) m->from_kind = ADDR_ANONYMOUS;
        else if (is_client_id(from_.s)) m->from_kind = ADDR_ID;
        else fail("from is not a client id");
    }
    if (to_.present && !to_.is_string) fail("to must be a string");
    else if (to_.present) {
        m->to = to_.s;
        if (eq_form(to_.s, compact, "s", "server")) m->to_kind = ADDR_SERVER;
        else if (eq_form(to_.s, compact, "c", "client")) m->to_kind = ADDR_BROADCAST;
        else if (is_client_id(to_.s)) m->to_kind = ADDR_ID;
        // The server answers an anonymous connection at "" (profile section 4).
        else if (to_.s.n == 0 && m->from_kind == ADDR_SERVER) m->to_kind = ADDR_ANONYMOUS;
        else fail("to is not a client id");
    }
    if (type_.present) {
        Str t = type_.s;
        if (!type_.is_string) fail("type must be request, response or event");
        else if (eq_form(t, compact, "q", "request")) m->type = REQUEST;
        else if (eq_form(t, compact, "r", "response")) m->type = RESPONSE;
        else if (eq_form(t, compact, "e", "event")) m->type = EVENT;
        else fail("type must be request, response or event");
    }
    if (id_.present) {
        if (!id_.is_string || !is_message_id(id_.s)) fail("id is neither ISO 8601 nor [a-z0-9]{5}");
        else m->id = id_.s;
    }
    if (!payload_is_object_) {
        fail("payload must be an object");
    }
    if (invalid_ || m->type == TYPE_NONE) {
        m->status = INVALID;
        m->reason = invalid_ ? invalid_ : "invalid message";
        return;
    }
    if (m->type != RESPONSE) {
        if (pseen_ & ~((1u << P_METHOD) | (1u << P_PARAMS)))
            fail("request and event payloads hold only method and params");
        else if (!method_.present || !method_.is_string || !is_method(method_.s))
            fail("method must be service@vN/endpoint");
        else if (m->has_params && params_bad_)
            fail("params must be an object or an array");
        m->method = method_.s;
    } else {
        bool has_receipt_key = pseen_ & (1u << P_RECEIPT);
        bool has_code_key = pseen_ & (1u << P_CODE);
        bool has_c = pseen_ & (1u << P_C);
        if (pseen_ & ((1u << P_METHOD) | (1u << P_PARAMS)))
            fail("response payloads hold result, receipt or code, and data");
        else if (!result_.present || !result_.is_string)
            fail("result must be success or fail");
        else if (eq_form(result_.s, compact, "s", "success")) {
            m->result = SUCCESS;
            if (has_code_key) fail("a success carries no code");
            else if (has_receipt_key || has_c) {
                // In compact form "c" holds the receipt of a success.
                const Slot& r = has_c ? code_ : receipt_;
                if (!r.is_string && !r.is_null) fail("receipt must be a string or null");
                m->has_receipt = true;
                m->receipt_null = r.is_null;
                m->receipt = r.s;
            }
        } else if (eq_form(result_.s, compact, "f", "fail")) {
            m->result = FAIL;
            if (has_receipt_key) fail("a failure carries no receipt");
            else if (!code_.present || !code_.is_string || !is_code(code_.s))
                fail("a failure needs a code like PERMISSION_DENIED");
            else m->code = code_.s;
        } else {
            fail("result must be success or fail");
        }
    }
    if (invalid_) {
        m->status = INVALID;
        m->reason = invalid_;
    }
}

// Parse `len` bytes at `buf`, which must have SIMDJSON_PADDING writable bytes after them.
inline void reset(WsaMsg* m) {
    std::memset(m, 0, sizeof(WsaMsg));
    m->status = NOT_JSON;
    m->reason = "not JSON";
}

inline void kernel_parse(od::parser& parser, const char* buf, size_t len, size_t capacity, WsaMsg* m) {
    reset(m);
    // A byte-order mark is not JSON text (RFC 8259 forbids emitting one).
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB && (unsigned char)buf[2] == 0xBF)
        return;
    if (Decoder(m, buf + len).run_plain(buf, len)) {
        if (m->status == NOT_JSON) {
            m->status = OK;
            m->reason = nullptr;
        }
        return;
    }
    reset(m);
    od::document doc;
    if (parser.iterate(buf, len, capacity).get(doc)) return;
    Decoder d(m, buf + len);
    if (!d.run(doc)) {
        // A JSON error anywhere voids what was read on the way.
        m->status = NOT_JSON;
        m->has_readable_id = m->has_readable_from = false;
        m->readable_type = TYPE_NONE;
        if (m->reason == nullptr) m->reason = "not JSON";
        return;
    }
    if (m->status == NOT_JSON) {
        m->status = OK;
        m->reason = nullptr;
    }
}

// A parser of this kernel, behind the kernel-independent interface.
class KernelParser final : public wsa::Parser {
  public:
    // Written out: implicit members would be compiled without the kernel's target region.
    KernelParser() : parser_() {}
    ~KernelParser() override {}

    // flatten: simdjson's calls are inline, not always_inline, in the dispatched kernels (wsa_kernel.hpp);
    // this inlines them into the parse again (about 90 ns of calls on a 100-byte message otherwise).
    __attribute__((flatten)) void parse(const char* buf, size_t len, size_t capacity, WsaMsg* m) override {
        kernel_parse(parser_, buf, len, capacity, m);
    }

  private:
    od::parser parser_;
};

wsa::Parser* make_parser() { return new KernelParser(); }
