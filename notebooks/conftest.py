"""nbval runs every notebook in quick mode: small subsets and one epoch."""

import os

# The kernels nbval starts inherit this process's environment.
os.environ["VAEKIT_QUICK"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
