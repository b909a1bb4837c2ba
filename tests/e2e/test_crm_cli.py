"""`ctihub demo-data`, `ctihub crm export` and `ctihub crm import` as real processes on SQLite."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cti.cli import main

ROOT = Path(__file__).resolve().parents[2]


def ctihub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTIHUB_")}
    return subprocess.run([sys.executable, "-m", "cti.cli", *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, check=False,
                          capture_output=True, text=True, timeout=120)


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_demo_data_export_and_import(tmp_path: Path) -> None:
    source_db, target_db = tmp_path / "source.db", tmp_path / "target.db"
    demo = ctihub("demo-data", "--customers", "200", "--seed", "3", "--database-url",
                  f"sqlite+aiosqlite:///{source_db}", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "200 customers in the database" in demo.stdout
    assert count(source_db, "customers") == 200 and count(source_db, "customer_phones") >= 200
    assert count(source_db, "interactions") > 200 and count(source_db, "customer_emails") > 100

    export = ctihub("crm", "export", "-o", "customers.csv", "--database-url", f"sqlite+aiosqlite:///{source_db}",
                    cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    exported = (tmp_path / "customers.csv").read_text(encoding="utf-8")
    assert exported.count("\n") == 201

    # Two broken rows at the end: both reported with their line, the other 200 land.
    with (tmp_path / "customers.csv").open("a", encoding="utf-8", newline="") as handle:
        handle.write("cus_x1,Xavier,,en,GB,,,,+447700900123,,,,,,,,,,,,\n")
        handle.write("cus_x2,Yara,Nunes,pt,PT,,,,,,verified,low,,,,passport,PT1234567,,,,\n")
    target = f"sqlite+aiosqlite:///{target_db}"
    first = ctihub("crm", "import", "customers.csv", "--database-url", target, cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "imported 200 of 202 rows (200 new, 0 updated), rejected 2" in first.stdout
    assert "rejected line 202: last_name: required" in first.stderr
    assert "PT1234567" not in first.stderr + first.stdout
    with (tmp_path / "customers.csv.rejected.csv").open(encoding="utf-8", newline="") as handle:
        report = list(csv.DictReader(handle))
    assert [(r["_line"], r["id"]) for r in report] == [("202", "cus_x1"), ("203", "cus_x2")]
    assert report[1]["kyc_document_number_masked"] == "*****4567"
    assert count(target_db, "customers") == 200
    # Every KYC record the import created has its history row.
    assert count(target_db, "kyc_history") == count(target_db, "kyc_records") > 100

    # The same file again: every row is already there; --update-existing updates them.
    updated = ctihub("crm", "import", "customers.csv", "--database-url", target, "--update-existing",
                     cwd=tmp_path)
    assert updated.returncode == 1 and "(0 new, 200 updated), rejected 2" in updated.stdout
    # The same KYC records again are no change: no history row more.
    assert count(target_db, "kyc_history") == count(target_db, "kyc_records")

    back = ctihub("crm", "export", "--database-url", target, cwd=tmp_path)
    assert back.returncode == 0 and back.stdout == exported


def test_a_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = ctihub("crm", "import", "nowhere.csv", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
                     cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr == "ctihub: no such file: nowhere.csv\n"


def test_usage_problems_exit_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (the same `main` the process runs): a process per case would cost seconds each.
    for name in [k for k in os.environ if k.startswith("CTIHUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    database = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    (tmp_path / "bad.csv").write_text("id,first_name,surname\n1,Ada,Lovelace\n", encoding="utf-8")
    (tmp_path / "ok.csv").write_text("first_name,last_name,language,country\nAda,Lovelace,en,GB\n", encoding="utf-8")
    (tmp_path / "latin1.csv").write_bytes("first_name,last_name,language,country\nJosé,Núñez,es,ES\n".encode("latin-1"))
    cases = [
        (["crm", "import", "bad.csv", "--database-url", database], "unknown column 'surname'"),
        (["crm", "import", "ok.csv", "--database-url", "mysql://nowhere/db"], "CTIHUB_DATABASE_URL"),
        (["crm", "import", "latin1.csv", "--database-url", database], "the file is not UTF-8"),
        (["crm", "import", "ok.csv", "--batch-size", "0", "--database-url", database], "--batch-size"),
        (["demo-data", "--customers", "-1", "--database-url", database], "--customers"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)
    assert main(["crm", "import", "ok.csv", "--database-url", database]) == 0
    assert "imported 1 of 1 rows" in capsys.readouterr().out
    assert not (tmp_path / "ok.csv.rejected.csv").exists()
