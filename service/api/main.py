"""Gathers the routers."""

from fastapi import APIRouter

from service.api.routes import datasets, events, health, jobs, metrics, plots, sweeps, ui

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(metrics.router)
api_router.include_router(jobs.router)
api_router.include_router(events.router)
api_router.include_router(plots.router)
api_router.include_router(datasets.router)
api_router.include_router(sweeps.router)
api_router.include_router(ui.router)
