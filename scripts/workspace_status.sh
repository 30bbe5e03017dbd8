#!/bin/sh
# workspace_status.sh: Bazel's --workspace_status_command for hallmark. It
# prints the commit of git HEAD as the stable status key hallmark_manifest
# reads (the claimed source commit; the signer verifies it):
#   build --workspace_status_command=/path/to/workspace_status.sh
# Outside a git checkout it prints nothing, and hallmark_manifest says so.
commit=$(git rev-parse HEAD 2>/dev/null) || exit 0
echo "STABLE_HALLMARK_COMMIT $commit"
