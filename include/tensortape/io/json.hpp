#pragma once
// The JSON that a safetensors header needs, and nothing more: objects, arrays, strings and
// integers. Anything else (fractions, exponents, true/false/null) is rejected with the byte
// offset where it starts: a checkpoint header never holds them, and accepting them would only
// move the error somewhere vaguer. Written here to keep tensortape free of dependencies.

#include <tensortape/io/common.hpp>

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tensortape::io::detail::json {

struct Value {
    enum class Kind { object, array, string, integer };
    Kind kind = Kind::object;
    std::int64_t integer = 0;
    std::string string;
    std::vector<std::string> keys;  // object members, in file order; duplicates kept for the caller
    std::vector<Value> items;       // array items, or the values matching `keys`
    std::size_t offset = 0;         // where the value starts in the text, for messages
};

inline const char* kind_name(Value::Kind k) {
    switch (k) {
        case Value::Kind::object: return "an object";
        case Value::Kind::array: return "an array";
        case Value::Kind::string: return "a string";
        case Value::Kind::integer: return "an integer";
    }
    return "?";
}

// Parses `text` as one JSON value followed only by whitespace. Errors are io_errors that start
// "tensortape: <op>: <where>: invalid JSON at byte <n>: ".
class Parser {
public:
    // Real headers nest three deep; the cap keeps a hostile "[[[[..." from overflowing the stack.
    static constexpr int max_depth = 32;
    // Header arrays are shapes and offset pairs. A Value is about 100 bytes, so without a cap
    // a 100 MB header of "0,0,0,..." would take some 5 GB to parse before any check could fail.
    static constexpr std::size_t max_array_items = 64;

    Parser(std::string_view text, std::string_view op, std::string_view where) : s_(text), op_(op), where_(where) {}

    Value parse() {
        skip_ws();
        Value v = value(0);
        skip_ws();
        if (pos_ != s_.size()) error("unexpected ", found(), " after the end of the JSON value");
        return v;
    }

private:
    [[noreturn]] void error_at(std::size_t at, std::string_view what) {
        fail<io_error>(op_, where_, ": invalid JSON at byte ", at, ": ", what);
    }
    template <class... Parts>
    [[noreturn]] void error(Parts&&... parts) {
        std::ostringstream os;
        (os << ... << std::forward<Parts>(parts));
        error_at(pos_, os.str());
    }

    std::string found() const {
        if (pos_ >= s_.size()) return "end of input";
        const auto c = static_cast<unsigned char>(s_[pos_]);
        if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
        static const char hex[] = "0123456789abcdef";
        return std::string("byte 0x") + hex[c >> 4] + hex[c & 15];
    }

    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }

    void expect(char c, std::string_view context) {
        if (pos_ >= s_.size() || s_[pos_] != c) error("expected '", c, "' ", context, ", found ", found());
        ++pos_;
    }

    Value value(int depth) {
        if (pos_ >= s_.size()) error("expected a value, found end of input");
        const char c = s_[pos_];
        if (c == '{' || c == '[') {
            if (depth >= max_depth) error("nesting deeper than ", max_depth, " levels");
            return c == '{' ? object(depth + 1) : array(depth + 1);
        }
        if (c == '"') {
            Value v;
            v.kind = Value::Kind::string;
            v.offset = pos_;
            v.string = string();
            return v;
        }
        if (c == '-' || (c >= '0' && c <= '9')) return integer();
        if (s_.substr(pos_, 4) == "true" || s_.substr(pos_, 5) == "false" || s_.substr(pos_, 4) == "null")
            error("true, false and null are not part of a safetensors header");
        error("expected a value (object, array, string or integer), found ", found());
    }

    Value object(int depth) {
        Value v;
        v.kind = Value::Kind::object;
        v.offset = pos_++;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return v;
        }
        while (true) {
            skip_ws();
            if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key in object, found ", found());
            v.keys.push_back(string());
            skip_ws();
            expect(':', "after an object key");
            skip_ws();
            v.items.push_back(value(depth));
            skip_ws();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            expect('}', "or ',' in object");
            return v;
        }
    }

    Value array(int depth) {
        Value v;
        v.kind = Value::Kind::array;
        v.offset = pos_++;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return v;
        }
        while (true) {
            skip_ws();
            if (v.items.size() == max_array_items) error("array longer than ", max_array_items, " items");
            v.items.push_back(value(depth));
            skip_ws();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            expect(']', "or ',' in array");
            return v;
        }
    }

    Value integer() {
        Value v;
        v.kind = Value::Kind::integer;
        v.offset = pos_;
        const bool negative = s_[pos_] == '-';
        if (negative) ++pos_;
        if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') error("expected a digit, found ", found());
        if (s_[pos_] == '0' && pos_ + 1 < s_.size() && s_[pos_ + 1] >= '0' && s_[pos_ + 1] <= '9')
            error("leading zeros are not allowed in JSON numbers");
        // Accumulated as a negative number so that INT64_MIN is representable.
        std::int64_t n = 0;
        for (; pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; ++pos_) {
            const int d = s_[pos_] - '0';
            if (n < (std::numeric_limits<std::int64_t>::min() + d) / 10) error_at(v.offset, "integer does not fit in 64 bits");
            n = n * 10 - d;
        }
        if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E'))
            error_at(v.offset, "only integers are allowed in a safetensors header, found a number with a fraction or exponent");
        if (!negative) {
            if (n == std::numeric_limits<std::int64_t>::min()) error_at(v.offset, "integer does not fit in 64 bits");
            n = -n;
        }
        v.integer = n;
        return v;
    }

    unsigned hex4() {
        if (pos_ + 4 > s_.size()) error("\\u escape needs four hex digits, found end of input");
        unsigned u = 0;
        for (int k = 0; k < 4; ++k, ++pos_) {
            const char c = s_[pos_];
            u <<= 4;
            if (c >= '0' && c <= '9') u |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') u |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') u |= static_cast<unsigned>(c - 'A' + 10);
            else error("\\u escape needs four hex digits, found ", found());
        }
        return u;
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string string() {
        ++pos_;  // the opening quote
        std::string out;
        while (true) {
            if (pos_ >= s_.size()) error("unterminated string");
            const auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("unescaped control character (", found(), ") in string");
            if (c >= 0x80) {
                // Only the bytes of one sequence are checked, so the whole header is scanned once.
                const std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                const std::string_view seq = s_.substr(pos_, len);
                if (utf8_error_at(seq) != std::string_view::npos || seq.size() != len)
                    error("invalid UTF-8 (", found(), ") in string");
                out += seq;
                pos_ += len;
                continue;
            }
            if (c != '\\') {
                out += static_cast<char>(c);
                ++pos_;
                continue;
            }
            const std::size_t esc = pos_++;
            if (pos_ >= s_.size()) error("unterminated escape in string");
            switch (s_[pos_++]) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    std::uint32_t cp = hex4();
                    if (cp >= 0xDC00 && cp <= 0xDFFF) error_at(esc, "\\u escape is a low surrogate without a high surrogate before it");
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (s_.substr(pos_, 2) != "\\u") error_at(esc, "\\u escape is a high surrogate without a low surrogate after it");
                        pos_ += 2;
                        const std::uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) error_at(esc, "\\u escape is a high surrogate without a low surrogate after it");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: --pos_; error("invalid escape '\\", s_[pos_], "' in string");
            }
        }
    }

    std::string_view s_;
    std::string_view op_;
    std::string_view where_;
    std::size_t pos_ = 0;
};

inline Value parse(std::string_view text, std::string_view op, std::string_view where) {
    return Parser(text, op, where).parse();
}

// Appends `s` (valid UTF-8) as a JSON string. Non-ASCII characters are written as they are,
// which JSON allows and keeps names readable in a hex dump.
inline void write_string(std::string& out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

}  // namespace tensortape::io::detail::json
