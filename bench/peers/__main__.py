import sys

from bench.peers.benchmark import main

sys.exit(main())
