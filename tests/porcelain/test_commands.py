"""The other commands on the same seams, with the FakeEngine's checkpoints: ls and rm, push and pull
between the store, `oci:` layouts and a registry, export to an engine's archive and convert back,
checkpoints as referrers of an image, and check."""
from __future__ import annotations

import json

from porcelain_helpers import tags

from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout


def test_ls_and_rm(world, ckpt, private_host):
    assert ckpt("ls").err == "the local store is empty"
    assert ckpt("save", "--leave-running", "web", "web:v1").code == 0
    assert ckpt("save", "--leave-running", "web", "web:v2").code == 0
    listed = ckpt("ls", "--json").json()
    assert [e["reference"] for e in listed] == ["web:v1", "web:v2"] and listed[0]["container"] == "web"
    assert "web:v1" in ckpt("ls").out
    removed = ckpt("rm", "web:v1", "--json").json()
    assert removed["removed"] == "web:v1" and removed["freed"] == 0  # v2 still uses every blob but the config
    assert tags(private_host) == ["web:v2"]
    assert ckpt("rm", "oci:/tmp/x:v1").code == 2


def test_push_and_pull_between_store_layout_and_registry(world, ckpt, registry, private_host):
    assert ckpt("save", "web", "web:v1").code == 0
    ref = f"{registry.host}/team/web:v1"
    pushed = ckpt("push", "web:v1", ref, "--insecure", "--json")
    assert pushed.code == 0, pushed.err
    digest = pushed.json()["digest"]
    assert json.loads(registry.manifests[("team/web", "v1")][0])["artifactType"] == mt.CHECKPOINT_ARTIFACT
    pulled = ckpt("pull", ref, "--insecure", "--json")
    assert pulled.code == 0 and pulled.json()["destination"] == "web:v1" and pulled.json()["digest"] == digest
    layout = private_host / "out"
    assert ckpt("push", "web:v1", f"oci:{layout}:copy").code == 0
    assert Layout(layout).resolve("copy").digest == digest
    back = ckpt("pull", f"oci:{layout}:copy", "again:v1", "--json")
    assert back.code == 0, back.err
    assert "again:v1" in tags(private_host), "a pull from an oci: layout lands in the store"
    refused = ckpt("pull", str(private_host / "some.tar.zst"))
    assert refused.code == 2 and "ckpt convert" in refused.err


def test_export_to_an_archive_and_convert_it_back(world, ckpt, private_host):
    assert ckpt("save", "--leave-running", "web", "web:v1").code == 0
    archive = private_host / "web.tar.zst"
    exported = ckpt("export", "web:v1", str(archive), "--json")
    assert exported.code == 0, exported.err
    assert archive.stat().st_size == exported.json()["size"]
    back = ckpt("convert", str(archive), "back:v1", "--json")
    assert back.code == 0, back.err
    assert back.json()["origin"] != "ckpt"
    shown = ckpt("inspect", "back:v1", "--json").json()
    assert [p["comm"] for p in shown["processes"]] == ["sleepy"]
    assert ckpt("export", "web:v1", str(private_host / "web.zip")).code == 2


def test_convert_to_a_layout(world, ckpt, private_host):
    assert ckpt("save", "--leave-running", "web", "web:v1").code == 0
    res = ckpt("convert", "web:v1", f"oci:{private_host / 'img'}:web", "--json")
    assert res.code == 0, res.err
    assert Layout(private_host / "img").resolve("web").digest == res.json()["digest"]


def test_a_checkpoint_names_its_image_and_is_listed_by_it(world, ckpt, registry):
    config = registry.put_blob(b"{}")
    image = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                   "size": 2}, "layers": []}).encode()
    digest = registry.put_manifest("team/web", "base", image, mt.OCI_MANIFEST)
    res = ckpt("save", "--leave-running", "web", f"{registry.host}/team/web:v1", "--insecure",
               "--subject", f"{registry.host}/team/web:base")
    assert res.code == 0, res.err
    listed = ckpt("ls", f"{registry.host}/team/web@{digest}", "--insecure", "--json")
    assert listed.code == 0, listed.err
    assert [r["container"] for r in listed.json()] == ["web"]
    elsewhere = ckpt("save", "web", f"{registry.host}/team/other:v1", "--insecure",
                     "--subject", f"{registry.host}/team/web:base")
    assert elsewhere.code == 2 and "repository the checkpoint is pushed to" in elsewhere.err
    assert ckpt("ls", f"{registry.host}/team/web:base", "--insecure").code == 2


def test_check_reports_every_finding(ckpt, private_host):
    res = ckpt("check", "--json")
    findings = {f["what"]: f for f in res.json()}
    assert {"host", "root", "criu", "runc", "store", "pipe-max-size"} <= set(findings)
    assert findings["store"]["ok"] is True
    assert res.code == (0 if all(f["ok"] for f in findings.values() if f["what"] in
                                 {"criu", "runc", "pycriu", "store", "root", "network lock", "ip, nsenter"}) else 1)
