"""Generative synthesis (notebook 04): texture GAN, RealNet SDAS, DefectFill, Defect-GAN and their shared parts
(`diffusion`, `patches`, `defect_gan_nets`)."""
