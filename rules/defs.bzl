"""hallmark's Bazel rules: load everything from here.

    load("@hallmark//rules:defs.bzl", "hallmark_manifest", "hallmark_oci_image", ...)

See docs/rules.md for each rule, attribute and provider.
"""

load("//rules:providers.bzl", _HallmarkImageInfo = "HallmarkImageInfo", _HallmarkProvenanceInfo = "HallmarkProvenanceInfo")
load("//rules/private:gate_test.bzl", _hallmark_gate_test = "hallmark_gate_test")
load("//rules/private:image.bzl", _hallmark_oci_image = "hallmark_oci_image")
load("//rules/private:manifest.bzl", _hallmark_manifest = "hallmark_manifest")
load("//rules/private:push.bzl", _hallmark_push = "hallmark_push")

HallmarkProvenanceInfo = _HallmarkProvenanceInfo
HallmarkImageInfo = _HallmarkImageInfo
hallmark_manifest = _hallmark_manifest
hallmark_oci_image = _hallmark_oci_image
hallmark_push = _hallmark_push
hallmark_gate_test = _hallmark_gate_test
