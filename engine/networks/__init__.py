"""Neural networks: SD UNet, AutoencoderKL, text encoders (module names match checkpoint keys)."""
