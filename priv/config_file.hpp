// SPDX-License-Identifier: BSD-2-Clause
// Reading the files that hold the tunnel's secret (the configuration, with its
// password, and the optional key file), and vetting the hook command that
// [priv] runs as root.
//
// Every check is made on the descriptor that is then read (fstat, never a
// second lookup by name), and every refusal says what is wrong and the command
// that fixes it:
//   "/etc/mlvpn/x.conf: mode 0644 lets group and others read it (the file holds
//    the tunnel's secret); run: chmod 600 /etc/mlvpn/x.conf"
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/result.hpp"

namespace mlvpn::priv {

// Larger configuration files are refused: a real one is a few KiB.
inline constexpr std::size_t kMaxConfigFileSize = std::size_t{1} << 20;

// Reads a whole configuration file. The file must be a regular file (not a
// symbolic link, directory, FIFO or device), owned by root, with no
// permission bits for group or others, and at most kMaxConfigFileSize bytes.
// The returned text holds the password: the caller wipes it when done.
Result<std::string> read_config_file(const std::string& path);

// Reads a 32-byte key from a file with the same ownership and mode rules. The
// file holds exactly 32 raw bytes, or 64 hex digits, or 44 characters of
// standard base64 (`head -c 32 /dev/urandom | base64`); the text forms may end
// in one newline. Nothing of the file's content appears in error messages and
// every temporary copy is wiped.
Result<std::array<uint8_t, 32>> read_key_file(const std::string& path);

// Checks the hook command (statuscommand) as mlvpn 2.3 did before accepting
// it: an absolute path to an existing regular file, owned by root, executable
// by its owner, and not writable by group or others. The check follows
// symbolic links, as exec will.
Status check_hook_command(const std::string& path);

}  // namespace mlvpn::priv
