#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# rebind_test.sh with a configured port (bindport) on the client's moving
# link: a fresh group of sockets is bound to the same port, so the worker
# closes the link's sockets before it asks [priv] for fresh ones, and [priv]'s
# probe bind (docs/privsep.md, "Link sockets") finds the port free.
REBIND_BINDPORT=40999 exec bash "$(dirname "$0")/rebind_test.sh"
