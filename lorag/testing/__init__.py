"""lorag's testing kit, shipped with the package for its own tests, benchmarks and anyone
writing a new implementation of one of its Protocols.

Importing ``lorag.testing`` imports nothing else; take what you need from its modules:

- ``tiny_model``: ``build_tiny_model`` (a random 2-layer Llama with a ChatML tokenizer,
  built offline in about a second, loadable by vLLM and transformers) and ``make_lora``
  (random non-zero LoRA adapters for it).
- ``settings``: ``fast_settings``, a settings tree for fast tests (the fake embedder,
  small chunks, small commit groups).
- ``server``: ``LoragProcess``, ``lorag serve`` as a child process on a free port that
  dies with its parent; ``free_port``, ``child_environ``.
- ``beir``: ``write_beir``, tiny BEIR-format folders for evaluation tests.

Conformance suites, one per Protocol: pytest mixin classes (in the manner of Haystack's
``haystack/testing/document_store.py``) that a test class inherits and feeds through
fixtures; each module's docstring names the fixtures it needs.

- ``embedder_conformance.EmbedderConformance``: ``retrieval.embedders.Embedder``.
- ``vector_index_conformance.VectorIndexConformance``: ``retrieval.vector_index.VectorIndex``.
- ``adapter_store_conformance.AdapterStoreConformance``: the adapter store of
  ``adapters.store``.
- ``engine_conformance.EngineConformance``: ``adapters.engines.protocol.InferenceEngine``,
  with ``start_stack`` to warm an engine on the tiny model.

The deterministic fake embedder is ``retrieval.embedders.FakeEmbedder``, registered as
embedder backend ``fake``: it stays in the product registry so that a ``lorag serve``
child process can be told to use it through the environment
(``LORAG_RETRIEVAL__EMBEDDER__BACKEND=fake``).
"""
