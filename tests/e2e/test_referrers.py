"""A checkpoint pushed with --subject is listed as a referrer of its image (tag-schema fallback on
distribution, which has no referrers API)."""
from __future__ import annotations

import json

from support.registry_server import RegistryServer
from support.sample import ckpt, make_bundle, start, wait_for

from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest, empty_config, EMPTY_CONFIG_DATA
from checkpointer.reference import RegistryRef
from checkpointer.registry import Registry, push


def test_checkpoint_is_a_referrer_of_its_image(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    with RegistryServer(tmp_path, auth="none") as reg:
        base = Layout(tmp_path / "base", create=True)
        base.put_bytes(EMPTY_CONFIG_DATA, mt.OCI_EMPTY)
        layer = base.put_bytes(b"the image the container ran from", mt.LAYER_TAR)
        image = base.put_manifest(Manifest(config=empty_config(), layers=(layer,), artifact_type="application/x-test"))
        with Registry(reg.host) as client:
            push(base, image, RegistryRef(reg.host, "apps/web", "base"), registry=client)

        bundle = make_bundle(bundle_template, tmp_path / "bundle")
        start(runc_root, bundle, container_name)
        wait_for(bundle / "rootfs", lambda s: s.counter >= 2)
        subject = f"{reg.host}/apps/web@{image.digest}"
        for tag in ("ckpt1", "ckpt2"):
            ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name,
                 f"{reg.host}/apps/web:{tag}", "--subject", f"{reg.host}/apps/web:base", home=ckpt_home, check=True)

        listed = json.loads(ckpt("ls", subject, "--json", home=ckpt_home, check=True).stdout)
        assert len(listed) == 2
        assert {r["container"] for r in listed} == {container_name}
        assert all(r["artifact_type"] == mt.CHECKPOINT_ARTIFACT for r in listed)

        elsewhere = ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name,
                         f"{reg.host}/apps/other:x", "--subject", f"{reg.host}/apps/web:base", home=ckpt_home)
        assert elsewhere.returncode == 2
        assert "repository the checkpoint is pushed to" in elsewhere.stderr
