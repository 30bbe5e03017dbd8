"""hallmark_manifest: the signed manifest as an ordinary output of the build graph."""

load("//rules:providers.bzl", "HallmarkImageInfo", "HallmarkProvenanceInfo")

# The platform property the farm recognises (builder/signing.Property).
SIGN_PROPERTY = "hallmark-sign"

_NEEDS_FARM = ("hallmark_manifest: %s needs hallmark's remote executor: the signed manifest is made " +
               "by the farm's signer, not by a command. Build with " +
               "--remote_executor=grpc://<hallmark-builder> (a farm started with --signer=unix:PATH).")

def _subjects(ctx):
    subjects = []
    digests = []
    for t in ctx.attr.srcs:
        if HallmarkImageInfo in t:
            img = t[HallmarkImageInfo]
            subjects.append(img.manifest)
            digests.append(img.digest)
            continue
        files = t[DefaultInfo].files.to_list()
        if not files:
            fail("hallmark_manifest: %s has no files to sign" % t.label)
        for f in files:
            if f.is_directory:
                fail(("hallmark_manifest: %s is a directory; a subject must be a file " +
                      "(wrap directories in hallmark_oci_image or an archive)") % f.short_path)
            if f.is_source:
                fail(("hallmark_manifest: %s is a source file, not built by the farm; " +
                      "only outputs of farm actions can be subjects") % f.short_path)
            subjects.append(f)
    return subjects, digests

def _hallmark_manifest_impl(ctx):
    if not ctx.attr.srcs:
        fail("hallmark_manifest: srcs is empty; name the targets whose outputs the manifest covers")
    subjects, digests = _subjects(ctx)
    out = ctx.actions.declare_file(ctx.label.name + ".intoto.jsonl")
    targets = [str(t.label) for t in ctx.attr.srcs]

    # Stable status only (ctx.info_file), never volatile status
    # (ctx.version_file): the action key stays the same across `bazel clean`,
    # so the envelope comes back from the ActionCache.
    ctx.actions.run_shell(
        outputs = [out],
        inputs = subjects + [ctx.info_file],
        command = "echo \"$1\" >&2; exit 1",
        arguments = [_NEEDS_FARM % ctx.label],
        env = {
            "HALLMARK_STATUS_FILE": ctx.info_file.path,
            "HALLMARK_SUBJECTS": "\n".join([f.path for f in subjects]),
            "HALLMARK_TARGETS": "\n".join(targets),
        },
        mnemonic = "HallmarkManifest",
        progress_message = "Signing manifest %s (%d subjects)" % (ctx.label, len(subjects)),
        use_default_shell_env = False,
    )
    return [
        DefaultInfo(files = depset([out])),
        HallmarkProvenanceInfo(
            envelope = out,
            artifacts = depset(subjects),
            image_digests = depset(digests),
            targets = targets,
            source = struct(status_file = ctx.info_file, commit_key = "STABLE_HALLMARK_COMMIT"),
        ),
    ]

hallmark_manifest_rule = rule(
    implementation = _hallmark_manifest_impl,
    doc = "The rule behind the hallmark_manifest macro; use the macro, which sets exec_properties.",
    attrs = {
        "srcs": attr.label_list(
            doc = "Targets whose output files (or, for hallmark_oci_image, the image manifest) become the subjects.",
            allow_files = True,
            mandatory = True,
        ),
    },
    provides = [HallmarkProvenanceInfo],
)

def hallmark_manifest(name, srcs, exec_properties = None, **kwargs):
    """Declares NAME.intoto.jsonl, a signed manifest of the outputs of srcs.

    The one action runs on hallmark's farm, which asks its signer for SLSA v1
    provenance of the subjects and returns the DSSE envelope as the output.

    Args:
      name: the target name; the output is NAME.intoto.jsonl.
      srcs: targets whose files are the subjects (a hallmark_oci_image
        contributes its image manifest, so the image digest is a subject).
      exec_properties: extra execution properties; hallmark-sign is always set.
      **kwargs: common attributes (visibility, tags, testonly, ...).
    """
    props = dict(exec_properties or {})
    props[SIGN_PROPERTY] = "1"
    hallmark_manifest_rule(name = name, srcs = srcs, exec_properties = props, **kwargs)
