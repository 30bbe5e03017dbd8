"""hallmark_gate_test: a test that fails when a signed manifest does not pass the gate."""

load("//rules:providers.bzl", "HallmarkProvenanceInfo")

def _hallmark_gate_test_impl(ctx):
    prov = ctx.attr.manifest[HallmarkProvenanceInfo]
    check = ctx.executable._gatecheck
    args = [
        "--envelope=" + prov.envelope.short_path,
        "--key=" + ctx.file.key.short_path,
    ]
    files = [prov.envelope, ctx.file.key]
    for f in prov.artifacts.to_list():
        args.append("--subject=" + f.short_path)
        files.append(f)
    if ctx.file.policy:
        if not ctx.attr.identity:
            fail("hallmark_gate_test: policy needs identity (the service identity whose entry applies)")
        args.append("--policy=" + ctx.file.policy.short_path)
        args.append("--identity=" + ctx.attr.identity)
        files.append(ctx.file.policy)
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(
        output = script,
        is_executable = True,
        content = "#!/bin/sh\nexec %s %s\n" % (
            check.short_path,
            " ".join(["'%s'" % a.replace("'", "'\\''") for a in args]),
        ),
    )
    runfiles = ctx.runfiles(files = files + [check])
    runfiles = runfiles.merge(ctx.attr._gatecheck[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = script, runfiles = runfiles)]

hallmark_gate_test = rule(
    implementation = _hallmark_gate_test_impl,
    doc = """Checks a hallmark_manifest as a deploy gate would: the signature with the given
public key, that every subject file of the manifest is a subject of the signed statement, that the
signer verified a source commit, and that there are no unexplained inputs (client-written inputs
must match the policy's toleratedClientWritten; none are tolerated without a policy). With a
policy (the gate's policy format, written as JSON) and an identity it also applies that identity's
builders, sources and requireThirdPartyAllowlisted. It fails listing every problem.""",
    test = True,
    attrs = {
        "manifest": attr.label(doc = "A hallmark_manifest.", mandatory = True, providers = [HallmarkProvenanceInfo]),
        "key": attr.label(doc = "The signer's public key (PEM), as distributed to gates.", mandatory = True, allow_single_file = True),
        "policy": attr.label(doc = "A gate policy in JSON (apiVersion hallmark.dev/gate/v1).", allow_single_file = [".json"]),
        "identity": attr.string(doc = "The service identity whose policy entry applies."),
        "_gatecheck": attr.label(
            default = Label("//rules/tools/gatecheck"),
            executable = True,
            cfg = "target",
        ),
    },
)
