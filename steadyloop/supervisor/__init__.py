"""Worker processes under one supervisor: restart, recycle (--max-requests), stuck-loop kill
(--worker-timeout), zero-downtime HUP reload, --reload. Entry point: `run.supervise(config)`."""
