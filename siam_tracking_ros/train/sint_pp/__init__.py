"""SINT++ (Wang et al., CVPR 2018): train SINT with generated hard positives.

- :mod:`.vae`: a variational autoencoder on 64x64 target crops; decoding codes drawn around a
  target's posterior gives new positives from the target's manifold.
- :mod:`.policy`: the hard-positive transformation: a background patch occludes the positive at a
  position chosen by a small policy network trained with REINFORCE, the reward being SINT's
  matching loss of the occluded sample (harder positives earn more).
- :mod:`.train`: ``main(argv)`` trains both (and optionally the SINT matcher) on image crops.

Inference is SINT's; the ``sint_pp`` tracker is SINT with its own config and weights.
"""
