"""The docs' app, answering with the machine it runs on (as manyarch's demo does)."""

import platform

from fastapi import FastAPI

app = FastAPI(title="corpus")


@app.get("/")
def read_root() -> dict[str, str]:
    return {"machine": platform.machine()}
