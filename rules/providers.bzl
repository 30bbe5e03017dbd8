"""Providers of hallmark's rules: the contract downstream rules depend on."""

HallmarkProvenanceInfo = provider(
    doc = """A signed manifest (SLSA v1 provenance in a DSSE envelope) made by the farm's
signer for artifacts the farm built. Returned by hallmark_manifest.""",
    fields = {
        "envelope": "File: the DSSE envelope, NAME.intoto.jsonl (one line of JSON). " +
                    "It is the output of a hallmark-sign action: the farm asked the signer for it.",
        "artifacts": "depset of File: the subjects of the manifest, in the order given. " +
                     "Their sha256 digests are the statement's subject digests; the farm reads them " +
                     "from the action's input root, so they are the digests of exactly these files.",
        "image_digests": "depset of File: for each hallmark_oci_image among srcs, its NAME.digest file " +
                         "(\"sha256:<hex>\", the image manifest digest, which is also a subject).",
        "targets": "list of string: the labels of srcs, recorded in the manifest as the requested " +
                   "targets (externalParameters.targets: a claim).",
        "source": "struct(status_file = File, commit_key = string): where the claimed source commit " +
                  "comes from. status_file is Bazel's stable-status file; commit_key is " +
                  "\"STABLE_HALLMARK_COMMIT\". The signer verifies the claim before it signs.",
    },
)

HallmarkImageInfo = provider(
    doc = "An OCI image packed by hallmark_oci_image in a farm action.",
    fields = {
        "layout": "File (directory): the OCI image layout (oci-layout, index.json, blobs/sha256/...).",
        "manifest": "File: the image manifest; its sha256 is the image digest.",
        "digest": "File: the image digest as text, \"sha256:<hex>\" and a newline.",
    },
)
