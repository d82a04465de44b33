// The decoder's own cost: nanoseconds per wsa::Parser::parse of three messages, on the kernel
// new_parser() picks (SIMDJSON_FORCE_IMPLEMENTATION chooses another). Built and run by
// run_decode_kernels.py. Best of many batches: other programs on the machine only add time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "wsa_parse.hpp"

static std::string event(const std::string& params) {
    return "{\"from\":\"a1\",\"to\":\"b1\",\"type\":\"event\",\"id\":\"00001\","
           "\"payload\":{\"method\":\"chat@v1/message\",\"params\":" + params + "}}";
}

int main() {
    // The bench's relay-large text: 4 KiB with escapes.
    std::string text;
    while (text.size() < 4096) text += "The quick brown fox jumps over the lazy dog; caf\\u00e9 \\\"quoted\\\" and \\\\escaped\\\\. ";
    std::string rows = "{\"rows\":[";
    for (int i = 0; i < 150; i++) {
        std::string n = std::to_string(i);
        rows += (i ? ",{\"k\":" : "{\"k\":") + n + ",\"v\":[" + n + ",\"" + n + "\",null,true]}";
    }
    rows += "]}";
    const std::string messages[] = {event("{\"text\":\"hi\"}"), event("{\"text\":\"" + text + "\"}"), event(rows)};

    wsa::Parser* parser = wsa::new_parser();
    std::printf("%s", wsa::kernel_name());
    for (const std::string& msg : messages) {
        std::vector<char> buf(msg.size() + simdjson::SIMDJSON_PADDING, 0);
        std::memcpy(buf.data(), msg.data(), msg.size());
        wsa::WsaMsg m;
        parser->parse(buf.data(), msg.size(), buf.size(), &m);
        if (m.status != wsa::OK) {
            std::printf("\nnot decoded (%zu bytes): %s\n", msg.size(), m.reason);
            return 1;
        }
        double best = 1e30;
        for (int rep = 0; rep < 300; rep++) {
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < 1000; i++) parser->parse(buf.data(), msg.size(), buf.size(), &m);
            auto t1 = std::chrono::steady_clock::now();
            best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count() / 1000);
        }
        std::printf(" %zu:%.0f", msg.size(), best);
    }
    std::printf("\n");
    delete parser;
    return 0;
}
