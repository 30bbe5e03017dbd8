"""hallmark_oci_image: pack files into an OCI image layout in a farm action."""

load("//rules:providers.bzl", "HallmarkImageInfo")

def _hallmark_oci_image_impl(ctx):
    name = ctx.label.name
    layout = ctx.actions.declare_directory(name + ".oci")
    manifest = ctx.actions.declare_file(name + ".manifest.json")
    digest = ctx.actions.declare_file(name + ".digest")
    binary = ctx.executable.binary
    binary_path = ctx.attr.binary_path or "/app/" + binary.basename
    args = ctx.actions.args()
    args.add("--out", layout.path)
    args.add("--manifest", manifest.path)
    args.add("--digest", digest.path)
    args.add("--os", ctx.attr.os)
    args.add("--arch", ctx.attr.arch)
    args.add("--file=%s=%s:0755" % (binary_path, binary.path))
    inputs = [binary]
    for t, dest in ctx.attr.files.items():
        fs = t[DefaultInfo].files.to_list()
        if len(fs) != 1:
            fail("hallmark_oci_image: files: %s has %d files, want exactly one" % (t.label, len(fs)))
        if not dest.startswith("/"):
            fail("hallmark_oci_image: files: the destination %r of %s must be an absolute path" % (dest, t.label))
        args.add("--file=%s=%s:0644" % (dest, fs[0].path))
        inputs.append(fs[0])
    for e in (ctx.attr.entrypoint or [binary_path]):
        args.add("--entrypoint", e)
    for k, v in sorted(ctx.attr.env.items()):
        args.add("--env", "%s=%s" % (k, v))
    ctx.actions.run(
        executable = ctx.executable._ocipack,
        arguments = [args],
        inputs = inputs,
        outputs = [layout, manifest, digest],
        mnemonic = "HallmarkOCIPack",
        progress_message = "Packing OCI image %s" % ctx.label,
    )
    return [
        DefaultInfo(files = depset([layout, manifest, digest])),
        HallmarkImageInfo(layout = layout, manifest = manifest, digest = digest),
        OutputGroupInfo(digest = depset([digest]), manifest = depset([manifest])),
    ]

hallmark_oci_image = rule(
    implementation = _hallmark_oci_image_impl,
    doc = """Packs a binary (and optional files) into an OCI image layout, FROM scratch.

Outputs NAME.oci/ (the layout), NAME.manifest.json (the image manifest, whose sha256 is the
image digest) and NAME.digest ("sha256:<hex>"). The packing is deterministic and runs as an
ordinary action, so on hallmark's farm the image digest is a farm-produced output the signer
can trace.""",
    attrs = {
        "binary": attr.label(
            doc = "The executable to pack (e.g. a go_binary built for linux).",
            mandatory = True,
            executable = True,
            cfg = "target",
        ),
        "binary_path": attr.string(doc = "Where the binary goes in the image. Default /app/<basename>."),
        "files": attr.label_keyed_string_dict(
            doc = "Extra files: target (with exactly one file) -> absolute path in the image.",
            allow_files = True,
        ),
        "entrypoint": attr.string_list(doc = "The image entrypoint. Default [binary_path]."),
        "env": attr.string_dict(doc = "Environment variables of the image config."),
        "os": attr.string(default = "linux", doc = "The image config's os."),
        "arch": attr.string(default = "amd64", doc = "The image config's architecture."),
        "_ocipack": attr.label(
            default = Label("//rules/tools/ocipack"),
            executable = True,
            cfg = "exec",
        ),
    },
    provides = [HallmarkImageInfo],
)
