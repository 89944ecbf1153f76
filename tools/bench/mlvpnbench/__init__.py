# SPDX-License-Identifier: BSD-2-Clause
"""mlvpn-bench: runs mlvpn (and optionally wireguard-go) over emulated links
between network namespaces and records what happened. See docs/bench.md."""
