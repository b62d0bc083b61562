"""A flow served with flow.serve(), as a Prefect user runs one: each run writes its process id
to $BS_PID_DIR/<flow run id> (so the test can tell whether its process still lives), then
sleeps for `seconds`."""
import os
import time

from prefect import flow
from prefect.runtime import flow_run


@flow(name="bs-sleeper")
def sleeper(seconds: int = 600):
    path = os.path.join(os.environ["BS_PID_DIR"], str(flow_run.id))
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)


if __name__ == "__main__":
    sleeper.serve(name="bs-serve", limit=20)
