#!/usr/bin/env python3
"""Generates the default code mappings under mappings/data/ (a developer tool; never run by build,
test or demo).

    scripts/gen-mappings.py            # regenerate the files and print a summary
    scripts/gen-mappings.py --check    # exit 1 if a committed file differs from what would be generated

Inputs: the CMS Chronic Conditions Warehouse (CCW) list as tabulated by the Tuva Project
(../shared/data/code-lists/cms_ccw_chronic_conditions_hierarchy.csv, Apache-2.0) and the curated
SNOMED CT table below. Outputs (FHIR R4 JSON, 2-space indent, sorted, trailing newline):

    ccw-chronic-conditions.conceptmap.json    ICD-10-CM -> chronic category
    snomed-chronic-conditions.conceptmap.json SNOMED CT -> the same categories
    chronic-categories.codesystem.json        the categories (CCW condition ids, CCW type)
    ccm-activity-codes.valueset.json          CPT codes of CCM/PCM time
    ccm-consent-codes.valueset.json           LOINC consent document code
    LICENSE-tuva-Apache-2.0.txt               copied from the source folder

The category policy (which CCW conditions are left out, which are merged, how a code listed by
two conditions gets one category) is documented in mappings/data/README.md; keep the two in step.
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "code-lists"
DEFAULT_OUT = ROOT / "mappings" / "data"
CCW_CSV = "cms_ccw_chronic_conditions_hierarchy.csv"
LICENSE = "LICENSE-tuva-Apache-2.0.txt"

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
CATEGORY_SYSTEM = "urn:ccm-gateway:chronic-category"
VERSION = "1.0.0"
PUBLISHER = "ccm-gateway"

# CCW conditions left out: acute events or infections, not conditions expected to last 12 months
# (CMS CCM eligibility: "two or more chronic conditions expected to last at least 12 months").
EXCLUDED = {
    1: "acute event (acute myocardial infarction); the chronic disease is Ischemic Heart Disease",
    31: "acute infection (hepatitis A does not become chronic)",
    32: "acute or unspecified hepatitis B; chronic hepatitis B is its own condition (33)",
    34: "acute hepatitis C; chronic hepatitis C is its own condition (35)",
    36: "unspecified hepatitis C: cannot tell chronic from acute; conservative choice = do not count",
    38: "acute infection (hepatitis E)",
    39: "acute injury (hip/pelvic fracture)",
    61: "acute infection (pneumonia)",
    72: "acute events (stroke, transient ischemic attack: I60-I63, G45-G46, ...). Whether a past "
        "stroke counts is an open question; conservative choice = do not count. CCW lists no "
        "sequelae (I69.-) here; paralytic sequelae stay countable through Mobility Impairments (50)",
}

# Codes of an excluded condition that another condition lists again stay out there too (otherwise
# "Viral Hepatitis (general)" would bring back acute hepatitis A/B/C/E) -- except in these
# conditions, whose code asserts the chronic disease itself.
KEEP_EXCLUDED_CODES_IN = {
    56: "M80.- 'age-related osteoporosis with current pathological fracture' asserts osteoporosis",
}

# Acute by their ICD-10-CM title, yet listed only by conditions we keep (B17.- "Other acute viral
# hepatitis"): left out everywhere for the same reason as the excluded conditions.
ACUTE_CODES = {
    "B170": "acute delta-(super)infection of hepatitis B carrier",
    "B178": "other specified acute viral hepatitis",
    "B179": "acute viral hepatitis, unspecified",
}

# Clinically identical overlapping conditions: the first is folded into the second.
MERGED = {
    24: 23,  # Depressive Disorders -> Depression, Bipolar, or Other Depressive Mood Disorders
    65: 66,  # Schizophrenia -> Schizophrenia and Other Psychotic Disorders
}

# Curated SNOMED CT -> category. Display = the concept's fully specified name (FSN). Only chronic
# disorders whose CCW category exists; never social-circumstance findings or acute problems.
# Sources: the list (issue 3, rule 2), what Synthea emits for chronic disorders, and a few
# general parent concepts.
SNOMED_MAP = [
    # (code, category, FSN)
    ("44054006", "diabetes", "Diabetes mellitus type 2 (disorder)"),
    ("46635009", "diabetes", "Diabetes mellitus type 1 (disorder)"),
    ("73211009", "diabetes", "Diabetes mellitus (disorder)"),
    ("127013003", "diabetes", "Disorder of kidney due to diabetes mellitus (disorder)"),
    ("90781000119102", "diabetes", "Microalbuminuria due to type 2 diabetes mellitus (disorder)"),
    ("157141000119108", "diabetes", "Proteinuria due to type 2 diabetes mellitus (disorder)"),
    ("368581000119106", "diabetes", "Neuropathy due to type 2 diabetes mellitus (disorder)"),
    ("422034002", "diabetes", "Retinopathy due to type 2 diabetes mellitus (disorder)"),
    ("1551000119108", "diabetes",
     "Nonproliferative retinopathy due to type 2 diabetes mellitus (disorder)"),
    ("1501000119109", "diabetes",
     "Proliferative retinopathy due to type 2 diabetes mellitus (disorder)"),
    ("97331000119101", "diabetes",
     "Macular edema and retinopathy due to type 2 diabetes mellitus (disorder)"),
    ("60951000119105", "diabetes",
     "Blindness co-occurrent and due to type 2 diabetes mellitus (disorder)"),
    ("59621000", "hypertension", "Essential hypertension (disorder)"),
    ("38341003", "hypertension", "Hypertensive disorder, systemic arterial (disorder)"),
    ("709044004", "chronic_kidney_disease", "Chronic kidney disease (disorder)"),
    ("431855005", "chronic_kidney_disease", "Chronic kidney disease stage 1 (disorder)"),
    ("431856006", "chronic_kidney_disease", "Chronic kidney disease stage 2 (disorder)"),
    ("433144002", "chronic_kidney_disease", "Chronic kidney disease stage 3 (disorder)"),
    ("431857002", "chronic_kidney_disease", "Chronic kidney disease stage 4 (disorder)"),
    ("433146000", "chronic_kidney_disease", "Chronic kidney disease stage 5 (disorder)"),
    ("46177005", "chronic_kidney_disease", "End-stage renal disease (disorder)"),
    ("13645005", "chronic_obstructive_pulmonary_disease",
     "Chronic obstructive lung disease (disorder)"),
    ("185086009", "chronic_obstructive_pulmonary_disease",
     "Chronic obstructive bronchitis (disorder)"),
    ("87433001", "chronic_obstructive_pulmonary_disease", "Pulmonary emphysema (disorder)"),
    ("195967001", "asthma", "Asthma (disorder)"),
    ("233678006", "asthma", "Childhood asthma (disorder)"),
    ("84114007", "heart_failure_and_non_ischemic_heart_disease", "Heart failure (disorder)"),
    ("42343007", "heart_failure_and_non_ischemic_heart_disease",
     "Congestive heart failure (disorder)"),
    ("88805009", "heart_failure_and_non_ischemic_heart_disease",
     "Chronic congestive heart failure (disorder)"),
    ("414545008", "ischemic_heart_disease", "Ischemic heart disease (disorder)"),
    ("53741008", "ischemic_heart_disease", "Coronary arteriosclerosis (disorder)"),
    ("49436004", "atrial_fibrillation_and_flutter", "Atrial fibrillation (disorder)"),
    ("55822004", "hyperlipidemia", "Hyperlipidemia (disorder)"),
    ("13644009", "hyperlipidemia", "Hypercholesterolemia (disorder)"),
    ("302870006", "hyperlipidemia", "Hypertriglyceridemia (disorder)"),
    ("370143000", "depression_bipolar_or_other_depressive_mood_disorders",
     "Major depressive disorder (disorder)"),
    ("36923009", "depression_bipolar_or_other_depressive_mood_disorders",
     "Major depression, single episode (disorder)"),
    ("396275006", "rheumatoid_arthritis_osteoarthritis", "Osteoarthritis (disorder)"),
    ("239873007", "rheumatoid_arthritis_osteoarthritis", "Osteoarthritis of knee (disorder)"),
    ("239872002", "rheumatoid_arthritis_osteoarthritis", "Osteoarthritis of hip (disorder)"),
    ("201834006", "rheumatoid_arthritis_osteoarthritis",
     "Localized, primary osteoarthritis of the hand (disorder)"),
    ("69896004", "rheumatoid_arthritis_osteoarthritis", "Rheumatoid arthritis (disorder)"),
    ("64859006", "osteoporosis_with_or_without_pathological_fracture", "Osteoporosis (disorder)"),
    ("443165006", "osteoporosis_with_or_without_pathological_fracture",
     "Pathological fracture due to osteoporosis (disorder)"),
    ("26929004", "alzheimers_disease", "Alzheimer's disease (disorder)"),
    ("230265002", "alzheimers_disease", "Familial Alzheimer's disease of early onset (disorder)"),
    ("84757009", "epilepsy", "Epilepsy (disorder)"),
    ("128613002", "epilepsy", "Seizure disorder (disorder)"),
    ("40930008", "hypothyroidism", "Hypothyroidism (disorder)"),
    ("83664006", "hypothyroidism", "Idiopathic hypothyroidism (disorder)"),
    ("82423001", "fibromyalgia_and_chronic_pain_and_fatigue", "Chronic pain (finding)"),
    ("278860009", "fibromyalgia_and_chronic_pain_and_fatigue", "Chronic low back pain (finding)"),
    ("1121000119107", "fibromyalgia_and_chronic_pain_and_fatigue", "Chronic neck pain (finding)"),
    ("203082005", "fibromyalgia_and_chronic_pain_and_fatigue", "Fibromyalgia (disorder)"),
    ("86406008", "human_immunodeficiency_virus_and_or_acquired_immunodeficiency_syndrome_hiv_aids",
     "Human immunodeficiency virus infection (disorder)"),
    ("61977001", "hepatitis_b_chronic", "Chronic type B viral hepatitis (disorder)"),
    ("128302006", "hepatitis_c_chronic", "Chronic hepatitis C (disorder)"),
    ("271737000", "anemia", "Anemia (disorder)"),
    ("414916001", "obesity", "Obesity (disorder)"),
    ("162864005", "obesity", "Body mass index 30+ - obesity (finding)"),
    ("408512008", "obesity", "Body mass index 40+ - severely obese (finding)"),
    ("254837009", "cancer_breast", "Malignant neoplasm of breast (disorder)"),
    ("363406005", "cancer_colorectal", "Malignant tumor of colon (disorder)"),
    ("109838007", "cancer_colorectal", "Overlapping malignant neoplasm of colon (disorder)"),
    ("254637007", "cancer_lung", "Non-small cell lung cancer (disorder)"),
    ("424132000", "cancer_lung", "Non-small cell carcinoma of lung, TNM stage 1 (disorder)"),
    # Synthea's prostate cancer module records this (not necessarily malignant) concept.
    ("126906006", "cancer_prostate", "Neoplasm of prostate (disorder)"),
    ("192127007", "adhd_conduct_disorders_and_hyperkinetic_syndrome",
     "Child attention deficit disorder (disorder)"),
    ("47505003", "post_traumatic_stress_disorder_ptsd", "Posttraumatic stress disorder (disorder)"),
]


def die(message: str) -> None:
    print(f"gen-mappings: {message}", file=sys.stderr)
    sys.exit(2)


def dotted(code: str) -> str:
    """E119 -> E11.9 (for messages and documentation only)."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


class Condition:
    def __init__(self, row: dict[str, str]):
        self.id = int(row["condition_id"])
        self.name = row["condition"]
        self.code = row["condition_column_name"]
        self.type = "Common" if row["chronic_condition_type"] == "Common" else "Other"
        self.ccw_category = row["condition_category"]
        self.include: set[str] = set()
        self.exclude: set[str] = set()


def read_ccw(path: Path) -> dict[int, Condition]:
    conditions: dict[int, Condition] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cid = int(row["condition_id"])
            cond = conditions.setdefault(cid, Condition(row))
            if row["code_system"] != "ICD-10-CM":
                continue
            if row["inclusion_type"] == "Include":
                cond.include.add(row["code"].strip().upper())
            elif row["inclusion_type"] == "Exclude":
                cond.exclude.add(row["code"].strip().upper())
            else:
                die(f"{path.name}: unknown inclusion_type {row['inclusion_type']!r}")
    for cid in list(EXCLUDED) + list(MERGED) + list(MERGED.values()) + list(KEEP_EXCLUDED_CODES_IN):
        if cid not in conditions:
            die(f"{path.name}: no condition_id {cid}; the policy tables need updating")
    return conditions


class Categories:
    """The categories after exclusions and merges, and the one category each ICD code maps to."""

    def __init__(self, conditions: dict[int, Condition]):
        self.conditions = conditions
        self.log: list[str] = []
        # category id (the surviving condition id) -> codes
        self.codes: dict[int, set[str]] = {}
        # category id -> all CCW condition ids it stands for
        self.members: dict[int, list[int]] = {}

        excluded_codes: set[str] = set()
        for cid in EXCLUDED:
            excluded_codes |= conditions[cid].include - conditions[cid].exclude
        for cid, cond in sorted(conditions.items()):
            if cid in EXCLUDED:
                continue
            target = MERGED.get(cid, cid)
            self.members.setdefault(target, []).append(cid)
            codes = cond.include - cond.exclude
            if cid not in KEEP_EXCLUDED_CODES_IN:
                dropped = sorted(codes & excluded_codes)
                if dropped:
                    self.log.append(f"dropped from {cid} {cond.name}: {len(dropped)} code(s) of "
                                    f"excluded acute conditions: "
                                    + ", ".join(dotted(c) for c in dropped))
                codes -= excluded_codes
            acute = sorted(codes & ACUTE_CODES.keys())
            if acute:
                self.log.append(f"dropped from {cid} {cond.name}: acute "
                                + ", ".join(f"{dotted(c)} ({ACUTE_CODES[c]})" for c in acute))
                codes -= ACUTE_CODES.keys()
            self.codes.setdefault(target, set()).update(codes)
        for source, target in MERGED.items():
            self.log.append(f"merged {source} {conditions[source].name} into {target} "
                            f"{conditions[target].name}")

        # One category per code: prefer the Common condition, then the more specific (fewer
        # codes), then the lower condition_id.
        def rank(cat: int) -> tuple[int, int, int]:
            return (0 if conditions[cat].type == "Common" else 1, len(self.codes[cat]), cat)

        by_code: dict[str, list[int]] = collections.defaultdict(list)
        for cat, codes in self.codes.items():
            for code in codes:
                by_code[code].append(cat)
        self.category_of: dict[str, int] = {}
        resolved: dict[tuple[tuple[int, ...], int], list[str]] = collections.defaultdict(list)
        for code, cats in by_code.items():
            winner = min(cats, key=rank)
            self.category_of[code] = winner
            if len(cats) > 1:
                resolved[(tuple(sorted(cats)), winner)].append(code)
        self.overlaps = resolved
        self.final_codes: dict[int, set[str]] = collections.defaultdict(set)
        for code, cat in self.category_of.items():
            self.final_codes[cat].add(code)
        for cat in self.codes:
            if not self.final_codes.get(cat):
                die(f"category {cat} {conditions[cat].name} lost all its codes to overlaps")

    def category_code(self, cat: int) -> str:
        return self.conditions[cat].code

    def by_code(self) -> dict[str, int]:
        return {self.conditions[cat].code: cat for cat in self.codes}


def concept_map(ident: str, name: str, title: str, description: str, copyright_: str,
                source_system: str, elements: list[tuple[str, str, str]],
                element_display: dict[str, str] | None = None) -> dict:
    group_elements = []
    for code, category, display in sorted(elements):
        element = {"code": code}
        if element_display and code in element_display:
            element["display"] = element_display[code]
        element["target"] = [{"code": category, "display": display, "equivalence": "wider"}]
        group_elements.append(element)
    return {
        "resourceType": "ConceptMap",
        "id": ident,
        "url": f"urn:ccm-gateway:conceptmap:{ident}",
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": description,
        "copyright": copyright_,
        "group": [{"source": source_system, "target": CATEGORY_SYSTEM, "element": group_elements}],
    }


def value_set(ident: str, name: str, title: str, description: str, copyright_: str,
              system: str, concepts: list[tuple[str, str]]) -> dict:
    return {
        "resourceType": "ValueSet",
        "id": ident,
        "url": f"urn:ccm-gateway:valueset:{ident}",
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": description,
        "copyright": copyright_,
        "compose": {
            "include": [{
                "system": system,
                "concept": [{"code": c, "display": d} for c, d in sorted(concepts)],
            }]
        },
    }


def generate(source_dir: Path) -> tuple[dict[str, str], list[str]]:
    csv_path = source_dir / CCW_CSV
    if not csv_path.is_file():
        die(f"{csv_path} not found (pass --source DIR)")
    sha256 = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    conditions = read_ccw(csv_path)
    cats = Categories(conditions)
    summary = list(cats.log)

    ccw_elements = []
    for code, cat in cats.category_of.items():
        ccw_elements.append((code, cats.category_code(cat), conditions[cat].name))
    excluded_text = "; ".join(f"{cid} {conditions[cid].name}" for cid in sorted(EXCLUDED))
    ccw = concept_map(
        "ccw-chronic-conditions", "CcwChronicConditions",
        "ICD-10-CM to CCM chronic condition categories (CMS Chronic Conditions Warehouse)",
        "Maps ICD-10-CM diagnosis codes (dot-less, as in claims; the gateway matches them with or "
        "without the dot) to the chronic condition category the CCM engine counts. Categories are "
        "the CMS Chronic Conditions Warehouse (CCW) conditions, from the Tuva Project's tabulation "
        f"({CCW_CSV}, sha256 {sha256}). Each code maps to exactly one category. Left out as acute: "
        f"{excluded_text}. Merged: 24 into 23, 65 into 66. Overlaps resolved by: Common condition "
        "first, then the condition with fewer codes, then the lower condition id. See "
        "mappings/data/README.md. Generated by scripts/gen-mappings.py; do not edit by hand.",
        "Derived from The Tuva Project (https://github.com/tuva-health/tuva), Apache License 2.0 "
        "(LICENSE-tuva-Apache-2.0.txt); the underlying condition algorithms are the CMS Chronic "
        "Conditions Warehouse's (https://www2.ccwdata.org). ICD-10-CM is a US government code set.",
        ICD10CM, ccw_elements)

    by_code = cats.by_code()
    seen: set[str] = set()
    snomed_elements = []
    for code, category, fsn in SNOMED_MAP:
        if code in seen:
            die(f"SNOMED_MAP lists {code} twice")
        seen.add(code)
        if category not in by_code:
            die(f"SNOMED_MAP maps {code} to {category!r}, which is not a category (no CCW "
                "counterpart, or excluded); leave the code out instead of inventing a category")
        snomed_elements.append((code, category, conditions[by_code[category]].name))
    snomed_display = {code: fsn for code, _, fsn in SNOMED_MAP}
    snomed = concept_map(
        "snomed-chronic-conditions", "SnomedChronicConditions",
        "SNOMED CT to CCM chronic condition categories (curated)",
        "Maps SNOMED CT disorders (as EHRs and Synthea record them) to the same chronic condition "
        "categories as the ICD-10-CM map. Curated by hand (scripts/gen-mappings.py, SNOMED_MAP): "
        "chronic disorders (and the chronic findings chronic pain and BMI obesity), never "
        "social-circumstance findings (employment, stress, "
        "education, isolation, violence, housing, ...) or acute problems; a concept whose "
        "category has no CCW counterpart is left out. element.display is the concept's fully "
        "specified name. See mappings/data/README.md.",
        "This material includes SNOMED Clinical Terms (SNOMED CT), which is used by permission "
        "of SNOMED International. All rights reserved. SNOMED CT was originally created by the "
        "College of American Pathologists. Implementers of these artifacts must have the "
        "appropriate SNOMED CT Affiliate license.",
        SNOMED, snomed_elements, snomed_display)

    concepts = []
    for cat in sorted(cats.codes, key=lambda c: conditions[c].code):
        cond = conditions[cat]
        members = cats.members[cat]
        props = [{"code": "ccw-condition-id", "valueInteger": m} for m in members]
        props.append({"code": "ccw-type", "valueString": cond.type})
        props.append({"code": "ccw-condition-category", "valueString": cond.ccw_category})
        props.append({"code": "icd-10-cm-code-count", "valueInteger": len(cats.final_codes[cat])})
        definition = f"CMS Chronic Conditions Warehouse condition {cat}: {cond.name}."
        merged = [m for m in members if m != cat]
        if merged:
            definition += " Includes " + ", ".join(
                f"CCW condition {m} ({conditions[m].name})" for m in merged) + "."
        concepts.append({"code": cond.code, "display": cond.name, "definition": definition,
                         "property": props})
    codesystem = {
        "resourceType": "CodeSystem",
        "id": "chronic-category",
        "url": CATEGORY_SYSTEM,
        "version": VERSION,
        "name": "ChronicCategory",
        "title": "CCM chronic condition categories",
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": "The chronic condition categories the CCM engine counts (a patient with two "
                       "or more distinct categories qualifies for CCM, with one for PCM). One "
                       "category per CMS Chronic Conditions Warehouse condition, except the acute "
                       "ones left out and two merged pairs. See mappings/data/README.md.",
        "copyright": "Category names are the CMS Chronic Conditions Warehouse's, via The Tuva "
                     "Project (Apache License 2.0).",
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "property": [
            {"code": "ccw-condition-id", "description": "CCW condition id(s) this category "
             "stands for (two for a merged category)", "type": "integer"},
            {"code": "ccw-type", "description": "CCW condition type: Common (the 30 CCW chronic "
             "conditions) or Other (other chronic or potentially disabling conditions)",
             "type": "string"},
            {"code": "ccw-condition-category", "description": "CCW grouping (e.g. Cardiovascular "
             "Disease)", "type": "string"},
            {"code": "icd-10-cm-code-count", "description": "Number of ICD-10-CM codes mapped to "
             "this category in ccw-chronic-conditions.conceptmap.json", "type": "integer"},
        ],
        "concept": concepts,
    }

    activity = value_set(
        "ccm-activity-codes", "CcmActivityCodes", "CCM and PCM care-management time codes",
        "Encounter.type / Encounter.serviceType codes whose finished encounters count as "
        "care-management time (chronic and principal care management). The displays are "
        "ccm-gateway's own short summaries, not the AMA's CPT descriptors.",
        "CPT is a registered trademark of the American Medical Association (AMA); CPT codes are "
        "copyright AMA. The displays here are not CPT descriptors.",
        CPT, [
            ("99490", "CCM, clinical staff time, first 20 minutes in the month"),
            ("99439", "CCM, clinical staff time, each further 20 minutes"),
            ("99491", "CCM, billing practitioner's own time, first 30 minutes in the month"),
            ("99437", "CCM, billing practitioner's own time, each further 30 minutes"),
            ("99487", "Complex CCM, clinical staff time, first 60 minutes in the month"),
            ("99489", "Complex CCM, clinical staff time, each further 30 minutes"),
            ("99424", "PCM, billing practitioner's own time, first 30 minutes in the month"),
            ("99425", "PCM, billing practitioner's own time, each further 30 minutes"),
            ("99426", "PCM, clinical staff time, first 30 minutes in the month"),
            ("99427", "PCM, clinical staff time, each further 30 minutes"),
        ])
    consent = value_set(
        "ccm-consent-codes", "CcmConsentCodes", "CCM consent document codes",
        "Consent.category codes that mark a patient's consent to chronic or principal care "
        "management.",
        "This material contains content from LOINC (http://loinc.org). LOINC is copyright "
        "Regenstrief Institute, Inc. and the Logical Observation Identifiers Names and Codes "
        "(LOINC) Committee and is available at no cost under the license at "
        "http://loinc.org/license.",
        LOINC, [("59284-0", "Consent Document")])

    files = {
        "ccw-chronic-conditions.conceptmap.json": ccw,
        "snomed-chronic-conditions.conceptmap.json": snomed,
        "chronic-categories.codesystem.json": codesystem,
        "ccm-activity-codes.valueset.json": activity,
        "ccm-consent-codes.valueset.json": consent,
    }
    out = {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in files.items()}

    summary.append(f"overlaps resolved ({sum(len(c) for c in cats.overlaps.values())} codes; "
                   "conditions listing the same code -> the one kept):")
    for (cat_ids, winner), codes in sorted(cats.overlaps.items()):
        names = " / ".join(f"{c} {conditions[c].name} [{conditions[c].type}, "
                           f"{len(cats.codes[c])}]" for c in cat_ids)
        sample = ", ".join(dotted(c) for c in sorted(codes)[:6])
        more = ", ..." if len(codes) > 6 else ""
        summary.append(f"  {names}: {len(codes)} code(s) -> {winner} "
                       f"({sample}{more})")
    summary.append(f"{len(cats.codes)} categories; ICD-10-CM codes: {len(ccw_elements)}; "
                   f"SNOMED CT codes: {len(snomed_elements)}")
    return out, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"folder with {CCW_CSV} and {LICENSE} (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out instead of writing them")
    parser.add_argument("--quiet", action="store_true", help="no summary")
    args = parser.parse_args()

    files, summary = generate(args.source)
    license_text = (args.source / LICENSE).read_bytes()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.out / name).is_file()
                 or (args.out / name).read_text(encoding="utf-8") != text]
        if (args.out / LICENSE).read_bytes() != license_text:
            stale.append(LICENSE)
        for name in stale:
            print(f"gen-mappings: {args.out / name} is not what the generator writes", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    shutil.copyfile(args.source / LICENSE, args.out / LICENSE)
    if not args.quiet:
        print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
