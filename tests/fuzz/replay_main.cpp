// SPDX-License-Identifier: BSD-2-Clause
// A main() for a fuzz target without libFuzzer: replays files, and writes or
// checks the target's generated seeds.
//
//   fuzz_TARGET_replay PATH...              run every file (or every file in
//                                           each directory) through the target
//   fuzz_TARGET_replay --write-seeds DIR    (re)generate the seed corpus
//   fuzz_TARGET_replay --check-seeds DIR    fail if a generated seed is
//                                           missing from DIR or differs, or
//                                           the target's self_check() fails
//
// A failed check or a sanitizer report aborts; the file being run was printed
// just before, so it is the reproducer.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

// For targets without type-level checks (harness.hpp).
__attribute__((weak)) void mlvpn::fuzz::self_check() {}

namespace {

bool read_file(const fs::path& p, std::vector<uint8_t>& out) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return false;
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

int write_seeds(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
        std::fprintf(stderr, "%s: %s\n", dir.c_str(), ec.message().c_str());
        return 1;
    }
    const auto seeds = mlvpn::fuzz::seeds();
    for (const auto& s : seeds) {
        std::ofstream out(dir / s.name, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(s.bytes.data()), static_cast<std::streamsize>(s.bytes.size()));
        if (!out) {
            std::fprintf(stderr, "%s: cannot write\n", (dir / s.name).c_str());
            return 1;
        }
    }
    std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
    return 0;
}

int check_seeds(const fs::path& dir, const char* self) {
    int stale = 0;
    const auto seeds = mlvpn::fuzz::seeds();
    for (const auto& s : seeds) {
        std::vector<uint8_t> have;
        if (!read_file(dir / s.name, have)) {
            std::fprintf(stderr, "seed %s is missing from %s\n", s.name.c_str(), dir.c_str());
            ++stale;
        } else if (have != s.bytes) {
            std::fprintf(stderr, "seed %s in %s is stale (the generator now makes other bytes)\n", s.name.c_str(),
                         dir.c_str());
            ++stale;
        }
    }
    if (stale > 0) {
        std::fprintf(stderr, "regenerate the seeds with: %s --write-seeds %s\n", self, dir.c_str());
        return 1;
    }
    std::printf("%zu generated seeds are current in %s\n", seeds.size(), dir.c_str());
    std::fflush(stdout);
    mlvpn::fuzz::self_check();  // aborts with the reason
    return 0;
}

// Files to run: PATH itself, or the regular files in it, sorted.
bool collect(const fs::path& p, std::vector<fs::path>& out) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(p, ec)) {
            if (e.is_regular_file()) files.push_back(e.path());
        }
        if (ec) return false;
        std::sort(files.begin(), files.end());
        out.insert(out.end(), files.begin(), files.end());
        return true;
    }
    if (fs::is_regular_file(p, ec)) {
        out.push_back(p);
        return true;
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--write-seeds") return write_seeds(fs::path(args[1]));
    if (args.size() == 2 && args[0] == "--check-seeds") return check_seeds(fs::path(args[1]), argv[0]);
    if (args.empty() || args[0].starts_with("-")) {
        std::fprintf(stderr, "usage: %s PATH... | --write-seeds DIR | --check-seeds DIR\n", argv[0]);
        return 2;
    }
    std::vector<fs::path> files;
    for (const auto a : args) {
        if (!collect(fs::path(a), files)) {
            std::fprintf(stderr, "%s: %s\n", std::string(a).c_str(), std::strerror(errno ? errno : ENOENT));
            return 1;
        }
    }
    if (files.empty()) {
        std::fprintf(stderr, "no input files (an empty corpus is a mistake)\n");
        return 1;
    }
    for (const auto& f : files) {
        std::vector<uint8_t> bytes;
        if (!read_file(f, bytes)) {
            std::fprintf(stderr, "%s: cannot read\n", f.c_str());
            return 1;
        }
        std::fprintf(stderr, "running %s (%zu bytes)\n", f.c_str(), bytes.size());
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::printf("replayed %zu inputs\n", files.size());
    return 0;
}
