"""DAVS: talking-face generation by adversarially disentangled audio-visual representation (the ML library)."""
