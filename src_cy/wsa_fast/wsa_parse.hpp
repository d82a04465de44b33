// WSA message decoding straight over a WebSocket payload with simdjson On-Demand.
//
// This header holds the message, the lexical rules and the grammar of raw spans; the decoder
// itself (wsa_decoder.hpp) is compiled once per simdjson kernel in wsa_kernels.cpp, and
// new_parser() picks the best one this CPU runs, at run time.
//
// One call fills a WsaMsg with views into the padded input buffer (raw params/data spans)
// or into the parser's string buffer (unescaped scalars): no allocation per message, and
// every view is valid until the next wsa_parse on the same parser. The rules are profile
// sections 2-3; wsa_fast/codec_py.py states the same rules in Python and is the oracle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "simdjson.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

// Every simdjson result is checked through its error code; setup.py defines this to 0 so that a
// forgotten check is a compile error (no implicit conversion exists), never a throw at run time.
#if SIMDJSON_EXCEPTIONS
#error "wsa_parse.hpp must be built with SIMDJSON_EXCEPTIONS=0"
#endif

namespace wsa {

enum Form { VERBOSE = 0, COMPACT = 1, FORM_UNKNOWN = -1 };
enum Type { TYPE_NONE = 0, REQUEST = 1, RESPONSE = 2, EVENT = 3 };
// from: SERVER, ANONYMOUS ("") or an ID; to: SERVER, BROADCAST or an ID.
enum Address { ADDR_ID = 0, ADDR_SERVER = 1, ADDR_BROADCAST = 2, ADDR_ANONYMOUS = 3 };
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

// The N - 1 bytes at p equal the literal's (up to 16), compared as two overlapping words, no call.
template <typename Word, size_t n>
inline bool same_words(const char* p, const char* lit) {
    Word a, b, c, d;
    std::memcpy(&a, p, sizeof(Word));
    std::memcpy(&b, lit, sizeof(Word));
    std::memcpy(&c, p + n - sizeof(Word), sizeof(Word));
    std::memcpy(&d, lit + n - sizeof(Word), sizeof(Word));
    return a == b && c == d;
}

template <size_t N>
inline bool same_bytes(const char* p, const char (&lit)[N]) {
    constexpr size_t n = N - 1;
    static_assert(n <= 16, "literals of up to 16 bytes");
    if constexpr (n >= 8) return same_words<uint64_t, n>(p, lit);
    else if constexpr (n >= 4) return same_words<uint32_t, n>(p, lit);
    else if constexpr (n >= 2) return same_words<uint16_t, n>(p, lit);
    else if constexpr (n == 1) return p[0] == lit[0];
    else return true;
}

// Text equal to a literal, its length known when compiled (so the compare is inlined, no strlen).
template <size_t N>
inline bool eq(Str s, const char (&lit)[N]) {
    return s.n == N - 1 && same_bytes(s.p, lit);
}

// The same for a value spelled one way in each form.
template <size_t C, size_t V>
inline bool eq_form(Str s, bool compact, const char (&in_compact)[C], const char (&in_verbose)[V]) {
    return compact ? eq(s, in_compact) : eq(s, in_verbose);
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

// How many of the eight bytes at p come before the first quote, backslash or control byte
// (8: none). Each test flags its lowest matching byte exactly (a borrow only runs upwards),
// so the lowest flag of the three is the first byte the string rules care about.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "plain_bytes_of_8 counts from the low byte");
inline int plain_bytes_of_8(const char* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    const uint64_t found =
        (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | ((w - ones * 0x20) & ~w)) & (ones << 7);
    return found ? __builtin_ctzll(found) >> 3 : 8;
}

// Whether n bytes at p are UTF-8: plain ASCII checked eight bytes at a time, anything else by simdjson.
inline bool valid_text(const char* p, size_t n) {
    uint64_t high = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        high |= w;
    }
    for (; i < n; i++) high |= (unsigned char)p[i];
    return !(high & 0x8080808080808080ULL) || simdjson::validate_utf8(p, n);
}

// How many of the 16 bytes at p come before the first quote, backslash or control byte (16: none).
inline int plain_bytes_of_16(const char* p) {
#ifdef __SSE2__
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1F)), x);
    const __m128i special = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))), control);
    const unsigned found = (unsigned)_mm_movemask_epi8(special);
    return found ? __builtin_ctz(found) : 16;
#else
    const int low = plain_bytes_of_8(p);
    return low < 8 ? low : 8 + plain_bytes_of_8(p + 8);
#endif
}

// A JSON string with no escape and no control byte at p (its opening quote): its text in *s, p moved past
// its closing quote. False for any other string, or none. Reads up to 15 bytes past `end`.
inline bool plain_string(const char*& p, const char* end, Str* s) {
    if (p >= end || *p != '"') return false;
    const char* start = ++p;
    for (;;) {
        if (p >= end) return false;
        const int plain = plain_bytes_of_16(p);
        p += plain;
        if (plain < 16) break;
    }
    if (p >= end || *p != '"') return false;
    *s = Str{start, (size_t)(p - start)};
    p++;
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

    // The end of the value that starts right at the span's start (no whitespace first), or nullptr.
    const char* value_end(int depth) { return value(depth) ? p_ : nullptr; }

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
            // Plain text eight bytes at a time: a large params or data is mostly long strings
            // (a 100 KB broadcast took 5 ms here byte by byte, bench/RESULTS.md issue 11).
            if (end_ - p_ >= 8) {
                int plain = plain_bytes_of_8(p_);
                p_ += plain;
                if (plain == 8) continue;
            }
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

// ---- the run-time dispatched parser (wsa_kernels.cpp) ----

// One On-Demand parser of one simdjson kernel; parse() fills `m` with views valid until the next call.
class Parser {
  public:
    virtual ~Parser() = default;
    // Parse `len` bytes at `buf`, which must have SIMDJSON_PADDING readable bytes after them.
    virtual void parse(const char* buf, size_t len, size_t capacity, WsaMsg* m) = 0;
};

// A parser of the best kernel this CPU runs (simdjson's detection, SIMDJSON_FORCE_IMPLEMENTATION honoured).
Parser* new_parser();
// The kernel new_parser() picks, e.g. "icelake", "haswell", "westmere", "arm64" or "fallback".
const char* kernel_name();
// The kernels compiled in, best first, separated by commas.
const char* compiled_kernels();

}  // namespace wsa
