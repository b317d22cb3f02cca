"""lorag on a Ray cluster (README, "Running on a Ray cluster").

An entry-point-level room: it joins the application layer (``lorag/app``) and the HTTP
app (``server/``) with Ray. ``app.py`` the Serve application (ingress, engine, adapter
registry), ``engine.py`` the engine deployment, ``engine_client.py`` the ingress' engine,
``adapters.py`` adapter delivery with sha256 checks, ``ingest.py`` Ray Data embedding
for ingestion, ``runtime.py`` joining or starting a cluster. Needs the ``ray`` extra.
"""
