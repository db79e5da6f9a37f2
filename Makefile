# RS OVSeg developer commands. Every target installs what it needs first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rs_ovseg_installed
PROFILE ?= $(CURDIR)/.qgis-profile
# A QGIS user profile folder, e.g. ~/.local/share/QGIS/QGIS3/profiles/default
DEPLOY_PROFILE ?= $(PROFILE)/profiles/default
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)

.PHONY: install test test-engine test-plugin run package deploy lint bench screenshot clean

install:
	@bash resources/scripts/install.sh

$(STAMP): constraints.txt pyproject.toml resources/scripts/install.sh
	@bash resources/scripts/install.sh

# Engine tests run without QGIS (pytest-qgis disabled); plugin tests run inside pytest-qgis.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest tests/engine -p no:pytest_qgis -W ignore::pytest.PytestConfigWarning -q
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests/plugin -q

test-engine: $(STAMP)
	$(PY) -m pytest tests/engine -p no:pytest_qgis -W ignore::pytest.PytestConfigWarning -q

test-plugin: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests/plugin -q

# Starts the QGIS desktop with the plugin installed into a dedicated profile ($(PROFILE)).
run:
	@RS_OVSEG_WITH_DESKTOP=1 bash resources/scripts/install.sh
	@bash resources/scripts/run_qgis.sh "$(PROFILE)"

package: $(STAMP)
	$(PY) resources/scripts/package.py --out dist/rs_ovseg_qgis-$(VERSION).zip

# Links the working tree into a QGIS profile's plugin folder (edits show after a plugin reload).
deploy: $(STAMP)
	$(PY) resources/scripts/package.py --deploy "$(DEPLOY_PROFILE)"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) -m engine bench --out resources/bench/results.jsonl

# Headless: starts QGIS under Xvfb with the plugin, shows the panel and saves a screenshot.
screenshot:
	@RS_OVSEG_WITH_DESKTOP=1 bash resources/scripts/install.sh
	@HEADLESS=1 bash resources/scripts/run_qgis.sh "$(PROFILE)" resources/screenshots/qgis_plugin.png

clean:
	rm -rf dist build .pytest_cache .ruff_cache
