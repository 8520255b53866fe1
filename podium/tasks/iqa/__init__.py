"""Samsung AI Challenge 2023 image quality assessment: MOS and captions (Dacon layout)."""
