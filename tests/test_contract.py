"""The I2I contract's input checks, shared by the diffusion and VQ-GAN families: bad input names
the argument (x, mask, corruption)."""
import pytest

from conftest import centre_mask, images
from test_diffusion import dummy as dummy_diffusion
from test_vqgan import dummy as dummy_vqgan


@pytest.mark.parametrize("build", [dummy_diffusion, dummy_vqgan], ids=["diffusion", "vqgan"])
def test_bad_inputs_name_the_argument(build):
    model = build()
    with pytest.raises(ValueError, match="^x:"):
        model.generate(images(2, 3), centre_mask(2))
    with pytest.raises(ValueError, match="^mask:"):
        model.encode(images(2), centre_mask(3))
    with pytest.raises(ValueError, match="^corruption:"):
        model.encode(images(2), centre_mask(2), model.sample_corruption(images(3), centre_mask(3)))
