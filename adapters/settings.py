"""Settings of adapters and inference engines."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator


class RemoteSettings(BaseModel):
    """The ``remote`` engine: a fleet of stock vLLM OpenAI servers
    (``adapters/engines/remote/``). Env: ``LORAG_ENGINE__REMOTE__SERVERS='["http://gpu-1:8000"]'``."""

    servers: list[str] = Field(
        [], description="Base URLs of the vLLM OpenAI servers (started with --enable-lora and "
                        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), e.g. http://gpu-1:8000.")
    served_model: str | None = Field(
        None, description="The base model as the servers name it (the `root` of their "
                          "/v1/models, i.e. their --model); None = lorag's engine.model. lorag "
                          "refuses to start against a server that serves another model.")
    shared_dir: Path | None = Field(
        None, description="Where lorag publishes adapter versions for the servers to read (a "
                          "volume both see: NFS, EFS, a Kubernetes volume); None = "
                          "<data_dir>/engine/published, for servers on the same machine.")
    server_shared_dir: str | None = Field(
        None, description="The same folder as the servers see it (their mount path); None = "
                          "the same path as shared_dir.")
    api_key: SecretStr | None = Field(
        None, description="Bearer key the servers expect (their --api-key); None = none.")
    health_interval_s: float = Field(
        5.0, gt=0, description="Seconds between health checks of each server; a server that "
                               "fails a check or a request is out until a check passes.")
    load_factor: float = Field(
        1.4, ge=1.0, description="Bounded load: a server whose outstanding requests would "
                                 "exceed this factor of the fleet's mean takes no more, and an "
                                 "adapter's requests spill to its next server. 1.4: in the "
                                 "routing simulation (bench/bench_pool.py) the highest of 1.25, "
                                 "1.4, 1.5 whose measured imbalance (mean max/mean) stays "
                                 "within 1.25, with the fewest cold loads.")
    adapters_per_server: int = Field(
        8, ge=1, description="Adapters a server keeps warm (its --max-loras plus its "
                             "--max-cpu-loras); lorag counts an adapter as cold on a server "
                             "that has been sent this many other adapters since.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Time to connect to a server.")
    request_timeout_s: float = Field(
        600.0, gt=0, description="Longest wait for the next bytes of a server's answer.")
    startup_timeout_s: float = Field(
        60.0, gt=0, description="How long warm-up waits for every server to answer before "
                                "refusing to start.")


class LoraOpPath(StrEnum):
    """How vLLM's CPU backend multiplies each token by its adapter's LoRA matrices
    (adapters/engines/vllm_cpu_fix.py). GPU builds run vLLM's Triton kernels instead."""

    AUTO = "auto"  # per batch: batched when many adapters share few tokens each, else grouped
    GROUPED = "grouped"  # one matrix product per distinct adapter in the batch
    BATCHED = "batched"  # one batched product over every adapter's tokens, padded per adapter


class EngineCoreCpus(StrEnum):
    """Where vLLM's engine core process runs on a CPU machine (adapters/engines/cpu_affinity.py)."""

    AUTO = "auto"  # worker when fewer than MIN_FREE_CPUS cores are left outside the worker's
    WORKER = "worker"  # on the worker's cores: the two take turns every step
    ANY = "any"  # wherever the OS puts it


class EngineSettings(BaseModel):
    backend: str = Field("vllm", description="Registered InferenceEngine name (vllm, peft, "
                                             "remote).")
    model: str | None = Field(
        None, description="HF model folder (or a model vLLM serves); None = the prepared SmolLM2-135M-Instruct.")
    dtype: str = Field("float32", description="float32 on CPUs without bf16; bfloat16 on GPUs.")
    max_model_len: int = Field(2048, ge=64, description="Context window the engine serves.")
    max_loras: int = Field(4, ge=1, description="Adapters resident in the engine at once.")
    max_cpu_loras: int = Field(16, ge=1, description="Adapters cached in host memory.")
    max_lora_rank: int = Field(16, ge=1, description="Largest LoRA rank accepted.")
    lora_target_modules: list[str] | None = Field(
        None, description="The only modules vLLM wraps with LoRA (e.g. [\"q_proj\", \"v_proj\"]); "
                          "None wraps every supported one. Each wrapped module costs LoRA "
                          "compute on every token of an adapter request, also where an adapter "
                          "has no weights; adapters that target other modules are refused at "
                          "registration.")
    kv_cache_bytes: int = Field(1 * 2**30, ge=2**20, description="KV cache size (CPU backend).")
    max_num_seqs: int = Field(32, ge=1, description="Sequences batched at once.")
    seed: int = 0
    onednn_cache: int = Field(
        64, ge=0, description="oneDNN primitive cache capacity in the engine process "
                              "(ONEDNN_PRIMITIVE_CACHE_CAPACITY in the environment vLLM spawns "
                              "it with; one already in the environment wins). vLLM's CPU kernels cache one "
                              "oneDNN primitive per matrix shape, and every new prompt length "
                              "is a new shape: at oneDNN's default of 1,024 the engine process "
                              "grew ~170 MiB over 500 chats with varied prompts, a bounded cache "
                              "keeps it flat (bench/bench_scale.py, scale.engine_cold_loads).")
    engine_process: bool = Field(
        True, description="Run vLLM's engine core in its own process, as serving should (an "
                          "8-token answer in ~31 ms against ~590 ms in-process, tiny model); "
                          "False starts it in-process, for tests. An explicit "
                          "VLLM_ENABLE_V1_MULTIPROCESSING in the environment wins.")
    engine_core_cpus: EngineCoreCpus = Field(
        EngineCoreCpus.AUTO,
        description="CPU machines: where vLLM's engine core process runs. It busy-waits "
                    "(sched_yield) on its worker while the worker computes a step, and the "
                    "worker busy-waits on it while it schedules the next, so during "
                    "generation the pair holds two cores whatever the load. worker puts the "
                    "engine core on the worker's cores (they take turns each step), leaving "
                    "the other cores to lorag's HTTP, retrieval and ingestion; any leaves it "
                    "to the OS; auto takes worker when fewer than 2 cores are left outside "
                    "the worker's (a 2-core machine), else any. GPU builds ignore it.")
    enforce_eager: bool = Field(
        True, description="Run vLLM without torch.compile / CUDA graphs: starts in seconds; "
                          "set False on GPUs for throughput.")
    lora_ops: LoraOpPath = Field(
        LoraOpPath.AUTO, description="LoRA op path of vLLM's CPU backend: auto chooses per "
                                     "batch (batched when at least 4 distinct adapters have "
                                     "at most 16 tokens each, else grouped), grouped turns "
                                     "the batched path off, batched forces it. Both fix "
                                     "vLLM's index -1 (no adapter). GPUs ignore it.")
    remote: RemoteSettings = RemoteSettings()


class TrainingSettings(BaseModel):
    threads: int = Field(2, ge=1, description="torch threads while training (process-wide).")
    progress: bool = Field(True, description="Show a progress bar when training from the CLI.")


class AdapterSettings(BaseModel):
    training: TrainingSettings = TrainingSettings()
    store: str = Field(
        "local", description="Registered AdapterStore name (adapters.store.ADAPTER_STORES); "
                             "local = a SQLite catalog and adapter folders in the data directory.")
    max_upload_bytes: int = Field(512 * 2**20, ge=1, description="Largest adapter archive accepted.")
    max_unpacked_bytes: int = Field(
        2 * 2**30, ge=1, description="Largest total size of an archive's files once unpacked "
                                     "(refuses zip bombs).")
    max_archive_entries: int = Field(1000, ge=1, description="Most files an adapter archive may hold.")
    check_base_name: bool = Field(
        True, description="Refuse an adapter whose base_model_name_or_path names another model "
                          "(the shapes are always checked); False trusts the shapes alone.")
    import_roots: list[Path] | None = Field(
        None, description="The server folders whose adapter folders and archives "
                          "`POST /admin/tenants/{tenant}/adapters/register` may name (absolute "
                          "paths; a path is checked once resolved, so neither `..` nor a link "
                          "leads out of them). None = `<data_dir>/import/adapters`; [] refuses "
                          "every path. The CLI (`lorag adapters register`) may name any local "
                          "path. Env: LORAG_ADAPTERS__IMPORT_ROOTS='[\"/srv/adapters\"]'.")

    @field_validator("import_roots")
    @classmethod
    def _roots_are_absolute(cls, roots: list[Path] | None) -> list[Path] | None:
        for root in roots or ():
            if not root.is_absolute():
                raise ValueError(f"every import root must be an absolute path; got {str(root)!r}")
        return roots
