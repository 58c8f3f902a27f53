"""Gathers the routers."""

from fastapi import APIRouter

from service.api.routes import datasets, health, jobs

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(jobs.router)
api_router.include_router(datasets.router)
