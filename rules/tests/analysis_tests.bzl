"""Analysis tests of hallmark's rules: providers, the signing action, error messages.

Call hallmark_analysis_test_suite(name) from a BUILD file of a workspace that
has rules_go and bazel_skylib (rules/tests/analysis_test.go makes one).
"""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("//rules:defs.bzl", "HallmarkProvenanceInfo", "hallmark_gate_test", "hallmark_manifest")

def _manifest_providers_impl(ctx):
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    info = target[HallmarkProvenanceInfo]
    asserts.equals(env, "m.intoto.jsonl", info.envelope.basename)
    asserts.equals(env, 1, len(info.targets))
    asserts.true(env, info.targets[0].endswith("//:gen"), "targets = %s" % info.targets)
    asserts.equals(env, ["gen.txt"], [f.basename for f in info.artifacts.to_list()])
    asserts.equals(env, "STABLE_HALLMARK_COMMIT", info.source.commit_key)
    actions = [a for a in analysistest.target_actions(env) if a.mnemonic == "HallmarkManifest"]
    asserts.equals(env, 1, len(actions))
    a = actions[0]
    inputs = [f.basename for f in a.inputs.to_list()]
    asserts.true(env, "stable-status.txt" in inputs, "the action must read stable status: %s" % inputs)
    asserts.false(env, "volatile-status.txt" in inputs, "the action must not read volatile status")
    asserts.true(env, a.env["HALLMARK_SUBJECTS"].endswith("gen.txt"), "HALLMARK_SUBJECTS = %s" % a.env.get("HALLMARK_SUBJECTS"))
    asserts.true(env, "needs hallmark's remote executor" in " ".join(a.argv), "the command must say it needs the farm")
    return analysistest.end(env)

manifest_providers_test = analysistest.make(_manifest_providers_impl)

def _source_subject_impl(ctx):
    env = analysistest.begin(ctx)
    asserts.expect_failure(env, "is a source file, not built by the farm")
    return analysistest.end(env)

source_subject_test = analysistest.make(_source_subject_impl, expect_failure = True)

def _policy_without_identity_impl(ctx):
    env = analysistest.begin(ctx)
    asserts.expect_failure(env, "policy needs identity")
    return analysistest.end(env)

policy_without_identity_test = analysistest.make(_policy_without_identity_impl, expect_failure = True)

def hallmark_analysis_test_suite(name):
    """Declares the fixtures and the analysis tests, and a test_suite NAME.

    Args:
      name: the test_suite's name.
    """
    native.genrule(name = "gen", outs = ["gen.txt"], cmd = "echo hi > $@", tags = ["manual"])
    hallmark_manifest(name = "m", srcs = [":gen"], tags = ["manual"])
    manifest_providers_test(name = name + "_manifest_providers", target_under_test = ":m")

    hallmark_manifest(name = "m_source", srcs = ["src.txt"], tags = ["manual"])
    source_subject_test(name = name + "_source_subject", target_under_test = ":m_source")

    hallmark_gate_test(name = "g_noid", manifest = ":m", key = "src.txt", policy = "p.json", tags = ["manual"])
    policy_without_identity_test(name = name + "_policy_without_identity", target_under_test = ":g_noid")

    native.test_suite(name = name, tests = [
        name + "_manifest_providers",
        name + "_source_subject",
        name + "_policy_without_identity",
    ])
