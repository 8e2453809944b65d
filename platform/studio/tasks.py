from celery import shared_task

from studio import services


@shared_task(name="studio.run_generation_job", ignore_result=True, acks_late=True)
def run_generation_job(job_id: int) -> None:
    """Run a queued generation job (progress on the job); a job already started or finished is left alone."""
    services.job_run(job_id=job_id)
