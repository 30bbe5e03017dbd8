"""WORKSPACE setup for hallmark's rules.

    load("@hallmark//rules:repositories.bzl", "hallmark_dependencies", "hallmark_register_toolchains")
    hallmark_dependencies()
    hallmark_register_toolchains()

hallmark needs nothing beyond Bazel and rules_go: declare rules_go (and call its
go_rules_dependencies() and go_register_toolchains()) as its README says, then call these two.
"""

def hallmark_dependencies():
    """Declares hallmark's repository dependencies.

    There are none beyond rules_go (@io_bazel_rules_go), which the workspace
    declares itself; this checks that it did, with a message saying how.
    """
    if not native.existing_rule("io_bazel_rules_go"):
        fail("hallmark_dependencies: hallmark's rules need rules_go: declare the io_bazel_rules_go " +
             "http_archive (and call go_rules_dependencies() and go_register_toolchains()) before hallmark_dependencies()")

def hallmark_register_toolchains():
    """Registers hallmark's toolchains.

    hallmark's tools (ocipack, gatecheck) are Go programs built by rules_go
    with the Go toolchain the workspace registered, so there is nothing more
    to register; call it anyway, so future versions can add toolchains.
    """
    pass
