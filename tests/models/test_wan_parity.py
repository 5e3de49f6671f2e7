"""Parity with diffusers' WanTransformer3DModel: same weights, same velocity (needs `make parity`)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch and diffusers: run `make parity`")
diffusers = pytest.importorskip("diffusers", reason="parity tests need diffusers: run `make parity`")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from sora_jax.models.dit.config import get_dit_config  # noqa: E402
from sora_jax.models.dit.model import DiT  # noqa: E402
from sora_jax.models.dit.patchify import patchify, unpatchify  # noqa: E402
from sora_jax.models.dit.wan_import import load_wan_weights  # noqa: E402


@pytest.mark.parametrize("scan_layers", [True, False])
def test_dit_matches_wan_transformer(scan_layers):
    config = get_dit_config("tiny", dim=48, heads=4, mlp_dim=96, depth=2, in_channels=4, text_dim=32, freq_dim=32,
                            scan_layers=scan_layers, attention="xla")
    torch.manual_seed(0)
    wan = diffusers.WanTransformer3DModel(
        patch_size=config.patch, num_attention_heads=config.heads, attention_head_dim=config.head_dim,
        in_channels=config.in_channels, out_channels=config.in_channels, text_dim=config.text_dim,
        freq_dim=config.freq_dim, ffn_dim=config.mlp_dim, num_layers=config.depth,
    ).eval()
    with torch.no_grad():  # random non-zero output head, so the comparison is not between zeros
        wan.proj_out.weight.normal_(0, 0.2)
    dit = DiT(config, rngs=nnx.Rngs(0))
    load_wan_weights(dit, {k: v.numpy() for k, v in wan.state_dict().items()})

    rng = np.random.default_rng(0)
    video = rng.normal(size=(3, 6, 8, config.in_channels)).astype(np.float32)  # (F, H, W, C) latent
    text = rng.normal(size=(1, 5, config.text_dim)).astype(np.float32)
    t = 0.437
    with torch.no_grad():
        theirs = wan(torch.from_numpy(video.transpose(3, 0, 1, 2)[None]), torch.tensor([t * 1000.0]),
                     torch.from_numpy(text), return_dict=False)[0][0].numpy().transpose(1, 2, 3, 0)  # (F, H, W, C)
    tokens, coords, grid = patchify(video, config.patch)
    ones = jnp.ones((1, len(tokens)), jnp.int32)
    out = dit(jnp.asarray(tokens)[None], jnp.asarray(coords)[None], ones, jnp.full((1, len(tokens)), t),
              jnp.asarray(text), jnp.ones((1, 5), jnp.int32))
    ours = unpatchify(np.asarray(out[0]), grid, config.patch)
    assert np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
