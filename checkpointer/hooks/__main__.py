import sys

from ..cli import main

# `ckpt hooks ARGS`, through ckpt's one error boundary (--debug is an option of `ckpt` itself: here,
# set CKPT_DEBUG=1).
sys.exit(main(["hooks", *sys.argv[1:]], prog_name="ckpt"))
