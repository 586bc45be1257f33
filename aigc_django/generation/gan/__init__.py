"""The image GAN: a conditional DCGAN-class generator trained on the shop's own images.

``model`` holds the networks and their files, ``data`` the training images, ``train`` the
training that makes a versioned ``ModelArtifact(kind="gan")``; the image backend
``aigc_django.generation.backends.gan_image`` samples from the active one.
"""
