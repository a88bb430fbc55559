"""Query an auction served by TensorFlow Serving (a thin wrapper over tf_ama.serving_client).

    python serving/client.py --rest http://localhost:8501 --model additive_2x2_uniform \
        --bids '[[[0.5,0.2],[0.3,0.9]]]'
    python serving/client.py --grpc localhost:8500 --model additive_2x2_uniform --menu
    python serving/client.py --rest http://localhost:8501 --model additive_2x2_uniform --metadata
"""

import sys

from tf_ama.serving_client import main

if __name__ == "__main__":
    sys.exit(main())
