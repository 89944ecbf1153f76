// SPDX-License-Identifier: BSD-2-Clause
#include "priv/config_file.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "priv/fd.hpp"

namespace mlvpn::priv {
namespace {

// Key files are tiny; anything larger is certainly not one.
constexpr std::size_t kMaxKeyFileSize = 128;

// What the caller is reading, for the messages.
struct SecretFile {
    const char* link_hint;   // what to point at the real file ("-c", "key_file")
    std::size_t max_size;
    const char* size_text;   // max_size for humans
};

constexpr SecretFile kConfigFile{"-c", kMaxConfigFileSize, "1 MiB"};
constexpr SecretFile kKeyFile{"key_file", kMaxKeyFileSize, "128 bytes"};

// Quotes `s` for the "run: ..." hints so that they can be pasted into a shell
// even when the path holds spaces or quotes.
std::string shell_quote(std::string_view s) {
    bool plain = !s.empty();
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  std::string_view("_./-+:@%,=").find(c) != std::string_view::npos;
        plain = plain && ok;
    }
    if (plain) return std::string(s);
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    out += '\'';
    return out;
}

std::string errno_text(int err) { return std::strerror(err); }

const char* file_kind(mode_t mode) {
    switch (mode & S_IFMT) {
        case S_IFDIR: return "a directory";
        case S_IFIFO: return "a FIFO";
        case S_IFCHR: return "a character device";
        case S_IFBLK: return "a block device";
        case S_IFSOCK: return "a socket";
        case S_IFLNK: return "a symbolic link";
        default: return nullptr;
    }
}

std::string not_regular(const std::string& path, mode_t mode) {
    if (const char* kind = file_kind(mode)) return fmt::format("{}: is {}, not a regular file", path, kind);
    return fmt::format("{}: is not a regular file", path);
}

// "group", "others" or "group and others", for the permission bits in `mask`.
std::string who_has(mode_t mode, mode_t group_mask, mode_t other_mask) {
    bool group = (mode & group_mask) != 0;
    bool other = (mode & other_mask) != 0;
    if (group && other) return "group and others";
    return group ? "group" : "others";
}

// Opens a secret file and checks it on the open descriptor. O_NONBLOCK keeps a
// FIFO planted at the path from hanging priv in open(); it changes nothing for
// the regular files that pass the checks.
Result<Fd> open_secret(const std::string& path, const SecretFile& kind, struct stat& st) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
        int err = errno;
        struct stat lst {};
        // O_NOFOLLOW reports a final symbolic link as ELOOP; lstat() only
        // chooses between the two messages, it decides nothing.
        if (err == ELOOP && ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
            return fail(fmt::format("{}: is a symbolic link; point {} at the real file", path,
                                    kind.link_hint));
        return fail(fmt::format("{}: {}", path, errno_text(err)));
    }
    if (::fstat(fd.get(), &st) != 0) return fail(fmt::format("{}: fstat: {}", path, errno_text(errno)));
    if (!S_ISREG(st.st_mode)) return fail(not_regular(path, st.st_mode));
    if (st.st_uid != 0)
        return fail(fmt::format("{}: owned by uid {}, must be owned by root; run: chown root: {}", path,
                                st.st_uid, shell_quote(path)));
    if ((st.st_mode & 077) != 0) {
        const char* what = (st.st_mode & 044) ? "read" : (st.st_mode & 022) ? "modify" : "access";
        return fail(fmt::format(
            "{}: mode {:04o} lets {} {} it (the file holds the tunnel's secret); run: chmod 600 {}", path,
            st.st_mode & 07777, who_has(st.st_mode, 070, 007), what, shell_quote(path)));
    }
    if (static_cast<std::size_t>(st.st_size) > kind.max_size)
        return fail(fmt::format("{}: is {} bytes, more than the {} a file of this kind may hold", path,
                                st.st_size, kind.size_text));
    return fd;
}

// Reads until EOF into `out`, which has room for `cap` bytes. Refuses a file
// that grew past `cap` after fstat (reading one byte more tells).
Result<std::size_t> read_all(int fd, const std::string& path, unsigned char* out, std::size_t cap,
                             const SecretFile& kind) {
    std::size_t got = 0;
    for (;;) {
        ssize_t n = ::read(fd, out + got, cap - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(fmt::format("{}: read: {}", path, errno_text(errno)));
        }
        if (n == 0) return got;
        got += static_cast<std::size_t>(n);
        if (got == cap) {
            unsigned char extra;
            ssize_t m;
            do m = ::read(fd, &extra, 1);
            while (m < 0 && errno == EINTR);
            if (m < 0) return fail(fmt::format("{}: read: {}", path, errno_text(errno)));
            if (m > 0) {
                sodium_memzero(&extra, 1);
                return fail(fmt::format("{}: grew past the {} a file of this kind may hold", path,
                                        kind.size_text));
            }
            return got;
        }
    }
}

}  // namespace

Result<std::string> read_config_file(const std::string& path) {
    struct stat st {};
    auto fd = open_secret(path, kConfigFile, st);
    if (!fd) return tl::unexpected(fd.error());

    // Sized once to the limit so that the text holding the password is never
    // reallocated (which would leave unwiped copies behind).
    std::string text(kMaxConfigFileSize, '\0');
    auto got = read_all(fd->get(), path, reinterpret_cast<unsigned char*>(text.data()), text.size(),
                        kConfigFile);
    if (!got) {
        sodium_memzero(text.data(), text.size());
        return tl::unexpected(got.error());
    }
    text.resize(*got);
    return text;
}

Result<std::array<uint8_t, 32>> read_key_file(const std::string& path) {
    struct stat st {};
    auto fd = open_secret(path, kKeyFile, st);
    if (!fd) return tl::unexpected(fd.error());

    // The file's bytes and the decoded key are wiped on every way out of
    // this function, after the key has been copied into the result.
    struct Wipe {
        unsigned char* p;
        std::size_t n;
        ~Wipe() { sodium_memzero(p, n); }
    };
    unsigned char buf[kMaxKeyFileSize];
    Wipe wipe_buf{buf, sizeof buf};
    std::array<uint8_t, 32> key{};
    Wipe wipe_key{key.data(), key.size()};

    auto got = read_all(fd->get(), path, buf, sizeof buf, kKeyFile);
    if (!got) return tl::unexpected(got.error());
    std::size_t n = *got;

    if (n == key.size()) {
        std::memcpy(key.data(), buf, key.size());
        return key;
    }

    const char* text = reinterpret_cast<const char*>(buf);
    std::size_t len = n;
    if (len > 0 && text[len - 1] == '\n') --len;
    if (len > 0 && text[len - 1] == '\r') --len;

    std::size_t bin_len = 0;
    const char* end = nullptr;
    if (len == 64) {
        if (sodium_hex2bin(key.data(), key.size(), text, len, nullptr, &bin_len, &end) == 0 &&
            bin_len == key.size() && end == text + len)
            return key;
        return fail(fmt::format("{}: holds 64 characters, but they are not all hex digits", path));
    }
    if (len == 44) {
        if (sodium_base642bin(key.data(), key.size(), text, len, nullptr, &bin_len, &end,
                              sodium_base64_VARIANT_ORIGINAL) == 0 &&
            bin_len == key.size() && end == text + len)
            return key;
        return fail(fmt::format("{}: holds 44 characters, but they are not the base64 of 32 bytes", path));
    }
    return fail(fmt::format(
        "{}: holds {} bytes, which is no key: expected 32 raw bytes, 64 hex digits or 44 base64 "
        "characters; make one with: (umask 077; head -c 32 /dev/urandom | base64 > {})",
        path, n, shell_quote(path)));
}

Status check_hook_command(const std::string& path) {
    if (path.empty() || path[0] != '/')
        return fail(fmt::format("{}: the hook command must be an absolute path", path));

    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return fail(fmt::format("{}: {}", path, errno_text(errno)));
    if (!S_ISREG(st.st_mode)) return fail(not_regular(path, st.st_mode));
    if (st.st_uid != 0)
        return fail(fmt::format(
            "{}: owned by uid {}, must be owned by root (the hook runs as root); run: chown root: {}", path,
            st.st_uid, shell_quote(path)));
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return fail(fmt::format("{}: mode {:04o} lets {} modify it (the hook runs as root); run: chmod go-w {}",
                                path, st.st_mode & 07777, who_has(st.st_mode, S_IWGRP, S_IWOTH),
                                shell_quote(path)));
    if (!(st.st_mode & S_IXUSR))
        return fail(fmt::format("{}: is not executable (mode {:04o}); run: chmod u+x {}", path,
                                st.st_mode & 07777, shell_quote(path)));

    // Whoever can write to a directory on the way can swap the file for
    // another, so every directory on the way must be as safe as the file
    // itself (as OpenSSH demands for AuthorizedKeysCommand). A sticky
    // directory owned by root, like /tmp, lets nobody replace root's entries.
    // Both ways: the path as written (a symlink to the hook lives in one of
    // those directories, and whoever may write there may point it elsewhere)
    // and the resolved path (where the file really is).
    const auto check_directories = [&path](std::string dir) -> Status {
        for (;;) {
            auto slash = dir.rfind('/');
            dir.resize(slash == 0 ? 1 : slash);
            struct stat dst {};
            if (::stat(dir.c_str(), &dst) != 0) return fail(fmt::format("{}: {}", dir, errno_text(errno)));
            if (dst.st_uid != 0)
                return fail(fmt::format(
                    "{}: directory {} is owned by uid {}, who could replace the hook (it runs as root); "
                    "move the hook to a directory owned by root, such as /etc/mlvpn",
                    path, dir, dst.st_uid));
            if ((dst.st_mode & (S_IWGRP | S_IWOTH)) && !(dst.st_mode & S_ISVTX))
                return fail(fmt::format(
                    "{}: directory {} (mode {:04o}) lets {} replace the hook (it runs as root); run: chmod go-w {}",
                    path, dir, dst.st_mode & 07777, who_has(dst.st_mode, S_IWGRP, S_IWOTH), shell_quote(dir)));
            if (dir == "/") return {};
        }
    };
    if (auto ok = check_directories(path); !ok) return ok;
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) == nullptr)
        return fail(fmt::format("{}: {}", path, errno_text(errno)));
    if (auto ok = check_directories(resolved); !ok) return ok;
    return {};
}

}  // namespace mlvpn::priv
