// SPDX-License-Identifier: BSD-2-Clause
#include "priv/config_file.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/priv/test_support.hpp"

namespace {

using mlvpn::test::TempDir;

using mlvpn::priv::check_hook_command;
using mlvpn::priv::read_config_file;
using mlvpn::priv::read_key_file;

void write_file(const std::string& path, const std::string& content, mode_t mode, uid_t uid = 0) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    REQUIRE(::fchown(fd, uid, uid) == 0);
    REQUIRE(::fchmod(fd, mode) == 0);
    ::close(fd);
}

std::string error_of(const mlvpn::Result<std::string>& r) { return r ? "(no error)" : r.error().message; }
std::string error_of(const mlvpn::Result<std::array<uint8_t, 32>>& r) {
    return r ? "(no error)" : r.error().message;
}
std::string error_of(const mlvpn::Status& r) { return r ? "(no error)" : r.error().message; }

}  // namespace

TEST_CASE("config_file: a root-owned 0600 file is read whole") {
    TempDir dir;
    std::string text = "[general]\npassword = \"secret\"\n";
    // Larger than any single read, to exercise the read loop.
    for (int i = 0; i < 20000; ++i) text += "# padding line " + std::to_string(i) + "\n";
    write_file(dir / "x.conf", text, 0600);
    auto r = read_config_file(dir / "x.conf");
    REQUIRE(r);
    CHECK(*r == text);

    write_file(dir / "empty.conf", "", 0400);
    auto e = read_config_file(dir / "empty.conf");
    REQUIRE(e);
    CHECK(e->empty());
}

TEST_CASE("config_file: group and other permission bits are refused with the fix") {
    TempDir dir;
    const std::string p = dir / "x.conf";
    struct Case {
        mode_t mode;
        const char* text;
    };
    for (auto c : {Case{0644, "mode 0644 lets group and others read it"}, Case{0640, "mode 0640 lets group read it"},
                   Case{0604, "mode 0604 lets others read it"}, Case{0620, "mode 0620 lets group modify it"},
                   Case{0601, "mode 0601 lets others access it"}}) {
        CAPTURE(c.text);
        write_file(p, "[general]\n", c.mode);
        CHECK(error_of(read_config_file(p)) ==
              p + ": " + c.text + " (the file holds the tunnel's secret); run: chmod 600 " + p);
    }
}

TEST_CASE("config_file: a file not owned by root is refused") {
    TempDir dir;
    const std::string p = dir / "x.conf";
    write_file(p, "[general]\n", 0600, 65534);
    CHECK(error_of(read_config_file(p)) ==
          p + ": owned by uid 65534, must be owned by root; run: chown root: " + p);
}

TEST_CASE("config_file: symbolic links, directories, FIFOs, missing and oversized files are refused") {
    TempDir dir;
    write_file(dir / "real.conf", "[general]\n", 0600);
    REQUIRE(::symlink((dir / "real.conf").c_str(), (dir / "link.conf").c_str()) == 0);
    CHECK(error_of(read_config_file(dir / "link.conf")) ==
          dir / "link.conf" + ": is a symbolic link; point -c at the real file");

    REQUIRE(::mkdir((dir / "d.conf").c_str(), 0700) == 0);
    CHECK(error_of(read_config_file(dir / "d.conf")) == dir / "d.conf" + ": is a directory, not a regular file");

    // Without O_NONBLOCK this open would wait for a writer for ever.
    REQUIRE(::mkfifo((dir / "fifo.conf").c_str(), 0600) == 0);
    CHECK(error_of(read_config_file(dir / "fifo.conf")) == dir / "fifo.conf" + ": is a FIFO, not a regular file");

    CHECK(error_of(read_config_file(dir / "missing.conf")) == dir / "missing.conf" + ": No such file or directory");

    write_file(dir / "big.conf", "", 0600);
    REQUIRE(::truncate((dir / "big.conf").c_str(), mlvpn::priv::kMaxConfigFileSize + 1) == 0);
    CHECK(error_of(read_config_file(dir / "big.conf")) ==
          dir / "big.conf" + ": is 1048577 bytes, more than the 1 MiB a file of this kind may hold");
    REQUIRE(::truncate((dir / "big.conf").c_str(), mlvpn::priv::kMaxConfigFileSize) == 0);
    auto r = read_config_file(dir / "big.conf");
    REQUIRE(r);
    CHECK(r->size() == mlvpn::priv::kMaxConfigFileSize);
}

TEST_CASE("config_file: hints quote paths for the shell") {
    TempDir dir;
    const std::string p = dir / "it's mine.conf";
    write_file(p, "x", 0644);
    std::string quoted = "'" + dir.path() + "/it'\\''s mine.conf'";
    CHECK(error_of(read_config_file(p)) ==
          p + ": mode 0644 lets group and others read it (the file holds the tunnel's secret); run: chmod 600 " +
              quoted);
}

TEST_CASE("config_file: key files in raw, hex and base64 form") {
    TempDir dir;
    std::array<uint8_t, 32> key;
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i * 37 + 10);  // holds '\n' (10)
    std::string raw(reinterpret_cast<const char*>(key.data()), key.size());
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, key.data(), key.size());
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
    REQUIRE(std::string(b64).size() == 44);

    for (const std::string& content : {raw, std::string(hex), std::string(hex) + "\n", std::string(b64),
                                       std::string(b64) + "\n", std::string(b64) + "\r\n"}) {
        CAPTURE(content.size());
        write_file(dir / "key", content, 0600);
        auto r = read_key_file(dir / "key");
        REQUIRE_MESSAGE(r, error_of(r));
        CHECK(*r == key);
    }
}

TEST_CASE("config_file: bad key files are refused without showing their content") {
    TempDir dir;
    const std::string p = dir / "key";

    write_file(p, std::string(31, 'k'), 0600);
    CHECK(error_of(read_key_file(p)) ==
          p + ": holds 31 bytes, which is no key: expected 32 raw bytes, 64 hex digits or 44 base64 characters; "
              "make one with: (umask 077; head -c 32 /dev/urandom | base64 > " + p + ")");

    // 32 raw bytes and a newline: not a form we accept.
    write_file(p, std::string(32, 'k') + "\n", 0600);
    CHECK(error_of(read_key_file(p)).find("holds 33 bytes, which is no key") != std::string::npos);

    std::string not_hex = std::string(63, 'a') + "g";
    write_file(p, not_hex, 0600);
    auto e = error_of(read_key_file(p));
    CHECK(e == p + ": holds 64 characters, but they are not all hex digits");
    CHECK(e.find(not_hex) == std::string::npos);

    write_file(p, std::string(43, 'A') + "!", 0600);
    CHECK(error_of(read_key_file(p)) == p + ": holds 44 characters, but they are not the base64 of 32 bytes");

    write_file(p, std::string(200, 'a'), 0600);
    CHECK(error_of(read_key_file(p)) == p + ": is 200 bytes, more than the 128 bytes a file of this kind may hold");

    write_file(p, std::string(64, 'a'), 0640);
    CHECK(error_of(read_key_file(p)) ==
          p + ": mode 0640 lets group read it (the file holds the tunnel's secret); run: chmod 600 " + p);

    write_file(p, std::string(64, 'a'), 0600, 65534);
    CHECK(error_of(read_key_file(p)) == p + ": owned by uid 65534, must be owned by root; run: chown root: " + p);

    write_file(dir / "real", std::string(64, 'a'), 0600);
    REQUIRE(::symlink((dir / "real").c_str(), (dir / "link").c_str()) == 0);
    CHECK(error_of(read_key_file(dir / "link")) == dir / "link" + ": is a symbolic link; point key_file at the real file");
}

TEST_CASE("config_file: check_hook_command accepts a safe root-owned executable") {
    TempDir dir;  // /tmp is root's and sticky, the directory root's and 0700
    write_file(dir / "hook.sh", "#!/bin/sh\n", 0700);
    CHECK(error_of(check_hook_command(dir / "hook.sh")) == "(no error)");
    write_file(dir / "hook.sh", "#!/bin/sh\n", 0755);
    CHECK(error_of(check_hook_command(dir / "hook.sh")) == "(no error)");
    // A link is followed, as exec follows it.
    REQUIRE(::symlink((dir / "hook.sh").c_str(), (dir / "link.sh").c_str()) == 0);
    CHECK(error_of(check_hook_command(dir / "link.sh")) == "(no error)");
}

TEST_CASE("config_file: check_hook_command refuses unsafe hooks, one message each") {
    TempDir dir;
    const std::string p = dir / "hook.sh";

    CHECK(error_of(check_hook_command("hook.sh")) == "hook.sh: the hook command must be an absolute path");
    CHECK(error_of(check_hook_command(dir / "missing.sh")) == dir / "missing.sh" + ": No such file or directory");
    CHECK(error_of(check_hook_command(dir.path())) == dir.path() + ": is a directory, not a regular file");

    write_file(p, "#!/bin/sh\n", 0700, 65534);
    CHECK(error_of(check_hook_command(p)) ==
          p + ": owned by uid 65534, must be owned by root (the hook runs as root); run: chown root: " + p);

    write_file(p, "#!/bin/sh\n", 0775);
    CHECK(error_of(check_hook_command(p)) ==
          p + ": mode 0775 lets group modify it (the hook runs as root); run: chmod go-w " + p);
    write_file(p, "#!/bin/sh\n", 0757);
    CHECK(error_of(check_hook_command(p)) ==
          p + ": mode 0757 lets others modify it (the hook runs as root); run: chmod go-w " + p);
    write_file(p, "#!/bin/sh\n", 0777);
    CHECK(error_of(check_hook_command(p)) ==
          p + ": mode 0777 lets group and others modify it (the hook runs as root); run: chmod go-w " + p);

    write_file(p, "#!/bin/sh\n", 0644);
    CHECK(error_of(check_hook_command(p)) == p + ": is not executable (mode 0644); run: chmod u+x " + p);
}

TEST_CASE("config_file: check_hook_command refuses a hook in a directory others can write") {
    TempDir dir;
    const std::string sub = dir / "hooks";
    REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
    const std::string p = sub + "/hook.sh";
    write_file(p, "#!/bin/sh\n", 0700);

    REQUIRE(::chmod(sub.c_str(), 0777) == 0);
    CHECK(error_of(check_hook_command(p)) == p + ": directory " + sub +
                                                " (mode 0777) lets group and others replace the hook (it runs as "
                                                "root); run: chmod go-w " + sub);
    REQUIRE(::chmod(sub.c_str(), 01777) == 0);  // sticky, like /tmp: fine
    CHECK(error_of(check_hook_command(p)) == "(no error)");

    REQUIRE(::chmod(sub.c_str(), 0755) == 0);
    REQUIRE(::chown(sub.c_str(), 65534, 65534) == 0);
    CHECK(error_of(check_hook_command(p)) ==
          p + ": directory " + sub +
              " is owned by uid 65534, who could replace the hook (it runs as root); move the hook to a directory "
              "owned by root, such as /etc/mlvpn");
}

TEST_CASE("config_file: check_hook_command refuses a safe hook reached through a link in an unsafe directory") {
    TempDir dir;
    write_file(dir / "hook.sh", "#!/bin/sh\n", 0700);
    const std::string user = dir / "user";
    REQUIRE(::mkdir(user.c_str(), 0755) == 0);
    REQUIRE(::chown(user.c_str(), 65534, 65534) == 0);
    // The hook is safe, but whoever owns `user` may point the link elsewhere.
    const std::string link = user + "/hook";
    REQUIRE(::symlink((dir / "hook.sh").c_str(), link.c_str()) == 0);
    CHECK(error_of(check_hook_command(link)) ==
          link + ": directory " + user +
              " is owned by uid 65534, who could replace the hook (it runs as root); move the hook to a directory "
              "owned by root, such as /etc/mlvpn");
}
