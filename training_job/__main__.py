from training_job.cli import app

app(prog_name="python -m training_job")
