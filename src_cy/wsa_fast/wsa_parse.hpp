// WSA message decoding straight over a WebSocket payload with simdjson On-Demand.
//
// One call fills a WsaMsg with views into the padded input buffer (raw params/data spans)
// or into the parser's string buffer (unescaped scalars): no allocation per message, and
// every view is valid until the next wsa_parse on the same parser. The rules are profile
// sections 2-3; wsa_fast/codec_py.py states the same rules in Python and is the oracle.
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>

#include "simdjson.h"

// Every simdjson result is checked through its error code; setup.py defines this to 0 so that a
// forgotten check is a compile error (no implicit conversion exists), never a throw at run time.
#if SIMDJSON_EXCEPTIONS
#error "wsa_parse.hpp must be built with SIMDJSON_EXCEPTIONS=0"
#endif

namespace wsa {

namespace od = simdjson::ondemand;

enum Form { VERBOSE = 0, COMPACT = 1, FORM_UNKNOWN = -1 };
enum Type { TYPE_NONE = 0, REQUEST = 1, RESPONSE = 2, EVENT = 3 };
// from: SERVER, ANONYMOUS ("") or an ID; to: SERVER, BROADCAST or an ID.
enum Peer { PEER_ID = 0, PEER_SERVER = 1, PEER_BROADCAST = 2, PEER_ANONYMOUS = 3 };
enum Result { RESULT_NONE = 0, SUCCESS = 1, FAIL = 2 };
// NOT_JSON covers everything that cannot be answered by id (not UTF-8/JSON/an object).
enum Status { OK = 0, NOT_JSON = 1, INVALID = 2 };

constexpr size_t MAX_CLIENT_ID = 64;
constexpr size_t MAX_METHOD = 128;
constexpr size_t MAX_READABLE_ID = 64;
constexpr int MAX_DEPTH = 128;

struct Str {
    const char* p;
    size_t n;
};

struct WsaMsg {
    int status;
    const char* reason;  // static text, set when status != OK
    int form;
    int type;
    int from_kind;
    int to_kind;
    int result;
    Str from, to, id, method, params, receipt, code, data;
    bool has_params, has_receipt, receipt_null, has_data;
    // Best-effort fields of an invalid message, so that it can be answered.
    bool has_readable_id, has_readable_from;
    Str readable_id, readable_from;
    int readable_type;
};

// ---- lexical rules (grammar.py) ----

inline bool is_id_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

inline bool eq(Str s, const char* lit) {
    size_t n = std::strlen(lit);
    return s.n == n && std::memcmp(s.p, lit, n) == 0;
}

inline bool is_client_id(Str s) {
    if (s.n == 0 || s.n > MAX_CLIENT_ID) return false;
    for (size_t i = 0; i < s.n; i++)
        if (!is_id_char((unsigned char)s.p[i])) return false;
    return !(eq(s, "server") || eq(s, "client") || eq(s, "s") || eq(s, "c"));
}

inline bool digit(char c) { return c >= '0' && c <= '9'; }

inline int two(const char* p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

inline bool all_digits(const char* p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!digit(p[i])) return false;
    return true;
}

// [a-z0-9]{5} or YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+hh:mm|-hh:mm), fields range-checked.
inline bool is_message_id(Str s) {
    const char* p = s.p;
    if (s.n == 5) {
        for (int i = 0; i < 5; i++)
            if (!((p[i] >= 'a' && p[i] <= 'z') || digit(p[i]))) return false;
        return true;
    }
    if (s.n < 20) return false;
    if (!(all_digits(p, 4) && p[4] == '-' && all_digits(p + 5, 2) && p[7] == '-' &&
          all_digits(p + 8, 2) && p[10] == 'T' && all_digits(p + 11, 2) && p[13] == ':' &&
          all_digits(p + 14, 2) && p[16] == ':' && all_digits(p + 17, 2)))
        return false;
    int month = two(p + 5), day = two(p + 8);
    if (month < 1 || month > 12 || day < 1 || day > 31) return false;
    if (two(p + 11) > 23 || two(p + 14) > 59 || two(p + 17) > 60) return false;
    size_t i = 19;
    if (p[i] == '.') {
        size_t start = ++i;
        while (i < s.n && digit(p[i])) i++;
        if (i == start || i - start > 9) return false;
    }
    if (i == s.n) return false;
    if (p[i] == 'Z') return i + 1 == s.n;
    if (p[i] != '+' && p[i] != '-') return false;
    if (s.n - i != 6 || !all_digits(p + i + 1, 2) || p[i + 3] != ':' || !all_digits(p + i + 4, 2))
        return false;
    return two(p + i + 1) <= 23 && two(p + i + 4) <= 59;
}

inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// [A-Za-z][A-Za-z0-9_-]*@v[0-9]+/[A-Za-z0-9_][A-Za-z0-9_./-]*, at most 128 chars.
inline bool is_method(Str s) {
    const char* p = s.p;
    size_t n = s.n, i = 0;
    if (n == 0 || n > MAX_METHOD || !is_alpha(p[0])) return false;
    for (i = 1; i < n && (is_alpha(p[i]) || digit(p[i]) || p[i] == '_' || p[i] == '-'); i++) {}
    if (i + 2 >= n || p[i] != '@' || p[i + 1] != 'v') return false;
    i += 2;
    size_t start = i;
    while (i < n && digit(p[i])) i++;
    if (i == start || i >= n || p[i] != '/') return false;
    i++;
    if (i >= n || !(is_alpha(p[i]) || digit(p[i]) || p[i] == '_')) return false;
    for (i++; i < n; i++)
        if (!(is_alpha(p[i]) || digit(p[i]) || p[i] == '_' || p[i] == '.' || p[i] == '/' || p[i] == '-'))
            return false;
    return true;
}

// [A-Z][A-Z0-9_]{0,63}
inline bool is_code(Str s) {
    if (s.n == 0 || s.n > 64 || !(s.p[0] >= 'A' && s.p[0] <= 'Z')) return false;
    for (size_t i = 1; i < s.n; i++) {
        char c = s.p[i];
        if (!((c >= 'A' && c <= 'Z') || digit(c) || c == '_')) return false;
    }
    return true;
}

inline bool is_readable_id(Str s) {
    if (s.n == 0 || s.n > MAX_READABLE_ID) return false;
    for (size_t i = 0; i < s.n; i++)
        if ((unsigned char)s.p[i] < 0x20 || (unsigned char)s.p[i] > 0x7e) return false;
    return true;
}

// ---- strict JSON grammar over a raw span ----
// On-Demand skips the inside of values it is not asked about; params and data are
// passed through raw, so their grammar and depth are checked here, once, in one pass.

class SpanValidator {
  public:
    SpanValidator(const char* p, size_t n) : p_(p), end_(p + n) {}

    bool value_then_end(int depth) {
        ws();
        if (!value(depth)) return false;
        ws();
        return p_ == end_;
    }

  private:
    const char* p_;
    const char* end_;

    void ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) p_++;
    }

    bool lit(const char* word, size_t n) {
        if ((size_t)(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
        p_ += n;
        return true;
    }

    bool value(int depth) {
        if (p_ >= end_) return false;
        switch (*p_) {
            case '{': return object(depth + 1);
            case '[': return array(depth + 1);
            case '"': return string();
            case 't': return lit("true", 4);
            case 'f': return lit("false", 5);
            case 'n': return lit("null", 4);
            default: return number();
        }
    }

    bool object(int depth) {
        if (depth > MAX_DEPTH) return false;
        p_++;
        ws();
        if (p_ < end_ && *p_ == '}') { p_++; return true; }
        for (;;) {
            ws();
            if (p_ >= end_ || *p_ != '"' || !string()) return false;
            ws();
            if (p_ >= end_ || *p_ != ':') return false;
            p_++;
            ws();
            if (!value(depth)) return false;
            ws();
            if (p_ >= end_) return false;
            if (*p_ == '}') { p_++; return true; }
            if (*p_ != ',') return false;
            p_++;
        }
    }

    bool array(int depth) {
        if (depth > MAX_DEPTH) return false;
        p_++;
        ws();
        if (p_ < end_ && *p_ == ']') { p_++; return true; }
        for (;;) {
            ws();
            if (!value(depth)) return false;
            ws();
            if (p_ >= end_) return false;
            if (*p_ == ']') { p_++; return true; }
            if (*p_ != ',') return false;
            p_++;
        }
    }

    static bool hex(char c) {
        return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }

    // Four hex digits at p (the caller has checked nothing): their value in *out.
    bool hex4(const char* p, unsigned* out) const {
        if (end_ - p < 4) return false;
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
            char c = p[i];
            if (!hex(c)) return false;
            v = v * 16 + (unsigned)(digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        *out = v;
        return true;
    }

    bool string() {
        p_++;
        while (p_ < end_) {
            unsigned char c = (unsigned char)*p_;
            if (c == '"') { p_++; return true; }
            if (c < 0x20) return false;
            if (c == '\\') {
                if (++p_ >= end_) return false;
                switch (*p_) {
                    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                        p_++;
                        break;
                    case 'u': {
                        // An unpaired surrogate is no Unicode text: refused here as simdjson's
                        // get_string refuses it in the fields it unescapes.
                        unsigned cp;
                        if (!hex4(p_ + 1, &cp)) return false;
                        p_ += 5;
                        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            unsigned low;
                            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u' || !hex4(p_ + 2, &low) ||
                                low < 0xDC00 || low > 0xDFFF)
                                return false;
                            p_ += 6;
                        }
                        break;
                    }
                    default:
                        return false;
                }
            } else {
                p_++;
            }
        }
        return false;
    }

    bool digits() {
        const char* start = p_;
        while (p_ < end_ && digit(*p_)) p_++;
        return p_ > start;
    }

    bool number() {
        if (p_ < end_ && *p_ == '-') p_++;
        if (p_ >= end_) return false;
        if (*p_ == '0') {
            p_++;
        } else if (!digits()) {
            return false;
        }
        if (p_ < end_ && *p_ == '.') {
            p_++;
            if (!digits()) return false;
        }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            p_++;
            if (p_ < end_ && (*p_ == '+' || *p_ == '-')) p_++;
            if (!digits()) return false;
        }
        return true;
    }
};

// ---- the decoder ----

// A field's value as simdjson hands it over: checked by each reader through get(), never converted.
using value_result = simdjson::simdjson_result<od::value>;

enum Field { F_FROM, F_TO, F_TYPE, F_ID, F_PAYLOAD, F_UNKNOWN };
enum PField { P_METHOD, P_PARAMS, P_RESULT, P_RECEIPT, P_CODE, P_C, P_DATA, P_UNKNOWN };

inline Field envelope_field(std::string_view k, int* form) {
    if (k.size() == 1) {
        *form = COMPACT;
        switch (k[0]) {
            case 'f': return F_FROM;
            case 't': return F_TO;
            case 'y': return F_TYPE;
            case 'i': return F_ID;
            case 'p': case 'P': return F_PAYLOAD;
            default: return F_UNKNOWN;
        }
    }
    *form = VERBOSE;
    if (k == "from") return F_FROM;
    if (k == "to") return F_TO;
    if (k == "type") return F_TYPE;
    if (k == "id") return F_ID;
    if (k == "payload") return F_PAYLOAD;
    return F_UNKNOWN;
}

inline PField payload_field(std::string_view k, int form) {
    if (form == COMPACT) {
        if (k.size() != 1) return P_UNKNOWN;
        switch (k[0]) {
            case 'm': return P_METHOD;
            case 'p': return P_PARAMS;
            case 'r': return P_RESULT;
            case 'c': return P_C;
            case 'd': return P_DATA;
            default: return P_UNKNOWN;
        }
    }
    if (k == "method") return P_METHOD;
    if (k == "params") return P_PARAMS;
    if (k == "result") return P_RESULT;
    if (k == "receipt") return P_RECEIPT;
    if (k == "code") return P_CODE;
    if (k == "data") return P_DATA;
    return P_UNKNOWN;
}

// A scalar slot of the payload read before the message type is known.
struct Slot {
    bool present;
    bool is_string;
    bool is_null;
    Str s;
};

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
        if (eq(from_.s, compact ? "s" : "server")) m->from_kind = PEER_SERVER;
        else if (from_.s.n == 0) m->from_kind = PEER_ANONYMOUS;
        else if (is_client_id(from_.s)) m->from_kind = PEER_ID;
        else fail("from is not a client id");
    }
    if (to_.present && !to_.is_string) fail("to must be a string");
    else if (to_.present) {
        m->to = to_.s;
        if (eq(to_.s, compact ? "s" : "server")) m->to_kind = PEER_SERVER;
        else if (eq(to_.s, compact ? "c" : "client")) m->to_kind = PEER_BROADCAST;
        else if (is_client_id(to_.s)) m->to_kind = PEER_ID;
        // The server answers an anonymous connection at "" (profile section 4).
        else if (to_.s.n == 0 && m->from_kind == PEER_SERVER) m->to_kind = PEER_ANONYMOUS;
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
inline void parse(od::parser& parser, const char* buf, size_t len, size_t capacity, WsaMsg* m) {
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

}  // namespace wsa
