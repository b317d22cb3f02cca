from lorag.core.jobs import FAILED, SUCCEEDED, Progress


def test_progress_records_counts_and_failures(app):
    app.tenants.create("acme")
    job_id = app.jobs.create("acme", "ingest")
    progress = Progress(app.jobs, job_id, total=3)
    progress.advance()
    progress.fail("doc-2", "empty_document", "document has no text")
    progress.advance()
    progress.finish({"chunks": 7})
    job = app.jobs.get("acme", job_id)
    assert (job.status, job.submitted, job.completed, job.failed) == (SUCCEEDED, 3, 2, 1)
    assert job.failures == [{"item": "doc-2", "code": "empty_document",
                             "message": "document has no text"}]
    assert job.result == {"chunks": 7}


def test_jobs_are_tenant_scoped_and_interrupted_ones_fail(app):
    import pytest

    from lorag.core.errors import NotFound

    app.tenants.create("acme")
    app.tenants.create("globex")
    job_id = app.jobs.create("acme", "ingest")
    with pytest.raises(NotFound):
        app.jobs.get("globex", job_id)
    assert app.jobs.fail_interrupted() == 1
    assert app.jobs.get("acme", job_id).status == FAILED
