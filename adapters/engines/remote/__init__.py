"""The ``remote`` engine: lorag in front of a fleet of stock vLLM OpenAI servers.

``engine.py`` the InferenceEngine; ``router.py`` which server a request goes to
(rendezvous hashing, bounded load, holder first; pure, shared with the routing
simulation in ``bench/bench_pool.py``); ``pool.py`` the servers' health, load and
adapters; ``client.py`` the HTTP calls to one server.
"""
