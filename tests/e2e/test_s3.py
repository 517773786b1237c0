"""S3 end to end: publish with `python -m train`, serve with MODEL_URI=s3://..."""

from __future__ import annotations

import io
import time
from pathlib import Path

import joblib
import pytest

from tests.support import SEED_FEATURES, FunctionServer, free_port, run_train

pytestmark = pytest.mark.e2e


def test_train_publishes_to_s3_and_the_function_serves_it(
    s3_env: dict, tmp_path: Path
) -> None:
    import boto3

    store = f"s3://{s3_env['BUCKET']}/team/models"
    published = run_train("--store", store, "--name", "demo", env=s3_env)
    assert published.returncode == 0, published.stderr
    assert f"MODEL_URI={store}/demo" in published.stdout

    s3 = boto3.client("s3", region_name="us-east-1")
    version = s3.get_object(Bucket=s3_env["BUCKET"], Key="team/models/demo/LATEST")
    version = version["Body"].read().decode().strip()
    key = f"team/models/demo/versions/{version}/model.pkl"
    model = joblib.load(
        io.BytesIO(s3.get_object(Bucket=s3_env["BUCKET"], Key=key)["Body"].read())
    )

    with FunctionServer({**s3_env, "MODEL_URI": f"{store}/demo"}, tmp_path) as server:
        response = server.post({"features": SEED_FEATURES})

    assert response.status_code == 200
    assert response.json()["prediction"] == model.predict([SEED_FEATURES])[0]
    assert response.headers["X-Model-Version"] == version


def test_store_down_at_first_request_is_503_then_recovers_without_restart(
    aws_credentials: None, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
    }
    with FunctionServer({**env, "MODEL_URI": "s3://late/m/demo"}, tmp_path) as server:
        down = server.post({"features": SEED_FEATURES})

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        try:
            import boto3

            boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"]).create_bucket(
                Bucket="late"
            )
            assert (
                run_train(
                    "--store", "s3://late/m", "--name", "demo", env=env
                ).returncode
                == 0
            )
            time.sleep(int(down.headers["Retry-After"]) + 0.2)
            back = server.post({"features": SEED_FEATURES})
        finally:
            moto.stop()

    assert down.status_code == 503
    assert down.json()["error"]["code"] == "store_unavailable"
    assert "s3://late/m/demo/LATEST" not in down.json()["error"]["message"]
    assert "s3://late/m/demo/LATEST" in server.logs()  # the operator's detail
    assert back.status_code == 200
    assert back.json()["prediction"] in (0, 1)
