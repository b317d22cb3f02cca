"""Answer quality: metrics without an LLM judge (``metrics``), the per-brand grounding
guard (``guard``), the chat evaluation behind ``lorag eval chat`` (``evaluation``)."""
