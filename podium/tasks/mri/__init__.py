"""FastMRI challenge (SNU 2025 and fastMRI layouts): data, masks, VarNet, leaderboard SSIM."""
