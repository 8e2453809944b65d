from celery import shared_task

from studio import services


@shared_task(name="studio.run_generation_job", ignore_result=True, acks_late=True)
def run_generation_job(job_id: int) -> None:
    """Run a queued generation job (progress on the job); a job already started or finished is left alone."""
    services.job_run(job_id=job_id)


@shared_task(name="studio.sweep_stuck_jobs", ignore_result=True)
def sweep_stuck_jobs() -> int:
    """Close jobs a dead worker left running (see services.jobs_sweep_stuck)."""
    return services.jobs_sweep_stuck()
