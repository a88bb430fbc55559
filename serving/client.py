"""Query an auction served by TensorFlow Serving: `tf-ama query` (`tf_ama.cli.app`), as a script.

    python serving/client.py --rest http://localhost:8501 --model additive_2x2_uniform \
        --bids '[[[0.5,0.2],[0.3,0.9]]]'
    python serving/client.py --grpc localhost:8500 --model additive_2x2_uniform --menu
    python serving/client.py --rest http://localhost:8501 --model additive_2x2_uniform --metadata
    python serving/client.py --grpc auction.example.com:8500 --tls-ca ca.pem \
        --model additive_2x2_uniform --menu                       # gRPC over TLS

Every answer is checked against the request (shapes, dtypes, ranges, individual
rationality); a malformed one, a refusal or an unreachable server prints one line naming
the problem and exits with status 2.
"""

import sys

from tf_ama.cli.app import main

if __name__ == "__main__":
    sys.exit(main(["query", *sys.argv[1:]]))
