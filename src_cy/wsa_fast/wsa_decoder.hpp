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
};

inline void Decoder::note_readable(Field f, const Slot& s) {
    // Only the first key naming a field counts, as in the reference codec.
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
        if (first) {
            note_readable(f, *slot);
        } else {
            fail("duplicate key");
        }
    }
    if (!doc.at_end()) return false;
    finish();
    return true;
}

inline void Decoder::finish() {
    WsaMsg* m = m_;
    m->form = form_ == COMPACT ? COMPACT : VERBOSE;
    const bool compact = m->form == COMPACT;
    if (!(from_.present && to_.present && type_.present && id_.present && (seen_ & (1u << F_PAYLOAD))))
        fail("missing field");
    // Field rules, in the reference codec's order.
    if (from_.present && !from_.is_string) fail("from must be a string");
    else if (from_.present) {
        m->from = from_.s;
        if (eq(from_.s, compact ? "s" : "server")) m->from_kind = ADDR_SERVER;
        else if (from_.s.n == 0) m->from_kind = ADDR_ANONYMOUS;
        else if (is_client_id(from_.s)) m->from_kind = ADDR_ID;
        else fail("from is not a client id");
    }
    if (to_.present && !to_.is_string) fail("to must be a string");
    else if (to_.present) {
        m->to = to_.s;
        if (eq(to_.s, compact ? "s" : "server")) m->to_kind = ADDR_SERVER;
        else if (eq(to_.s, compact ? "c" : "client")) m->to_kind = ADDR_BROADCAST;
        else if (is_client_id(to_.s)) m->to_kind = ADDR_ID;
        // The server answers an anonymous connection at "" (profile section 4).
        else if (to_.s.n == 0 && m->from_kind == ADDR_SERVER) m->to_kind = ADDR_ANONYMOUS;
        else fail("to is not a client id");
    }
    if (type_.present) {
        Str t = type_.s;
        if (!type_.is_string) fail("type must be request, response or event");
        else if (eq(t, compact ? "q" : "request")) m->type = REQUEST;
        else if (eq(t, compact ? "r" : "response")) m->type = RESPONSE;
        else if (eq(t, compact ? "e" : "event")) m->type = EVENT;
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
        else if (eq(result_.s, compact ? "s" : "success")) {
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
        } else if (eq(result_.s, compact ? "f" : "fail")) {
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
inline void kernel_parse(od::parser& parser, const char* buf, size_t len, size_t capacity, WsaMsg* m) {
    std::memset(m, 0, sizeof(WsaMsg));
    m->status = NOT_JSON;
    m->reason = "not JSON";
    // A byte-order mark is not JSON text (RFC 8259 forbids emitting one).
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB && (unsigned char)buf[2] == 0xBF)
        return;
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
