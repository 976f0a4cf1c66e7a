"""The demo borough: fictional organisations and one demo user for every role.

ODS codes here are made up (the Z prefix is not issued to real organisations
in England), so demo data can never be mistaken for a real organisation's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from sharedrecord.models import OrganisationKind, StaffRole

AGREEMENT_START = datetime.date(2025, 4, 1)


@dataclass(frozen=True)
class DemoOrganisation:
    ods_code: str
    name: str
    kind: OrganisationKind
    phone: str = ""


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    ods_code: str
    role: StaffRole
    manages_optouts: bool = False


# Phone numbers are from Ofcom's range kept for drama (01632 960xxx): never a real line.
ORGANISATIONS: tuple[DemoOrganisation, ...] = (
    DemoOrganisation(
        "Z81001", "Riverside Medical Practice", OrganisationKind.GP_PRACTICE, "01632 960 101"
    ),
    DemoOrganisation("Z81002", "Hillview Surgery", OrganisationKind.GP_PRACTICE, "01632 960 202"),
    DemoOrganisation(
        "Z81003", "Market Street Health Centre", OrganisationKind.GP_PRACTICE, "01632 960 303"
    ),
    DemoOrganisation("ZAC01", "Borough General Hospital NHS Trust", OrganisationKind.ACUTE),
    DemoOrganisation("ZCM01", "Borough Community Health NHS Trust", OrganisationKind.COMMUNITY),
    DemoOrganisation("ZMH01", "Borough Mental Health NHS Trust", OrganisationKind.MENTAL_HEALTH),
    DemoOrganisation("ZSC01", "Borough Council Adult Social Care", OrganisationKind.SOCIAL_CARE),
    DemoOrganisation("ZPH01", "Canal Side Pharmacy", OrganisationKind.PHARMACY),
    DemoOrganisation("ZSR01", "Borough Shared Care Record Programme", OrganisationKind.OTHER),
    DemoOrganisation(
        "ZDS01", "Borough Demographics Service", OrganisationKind.REGISTRATION_AUTHORITY
    ),
)

USERS: tuple[DemoUser, ...] = (
    DemoUser("gp.riverside", "Amira", "Okafor", "Z81001", StaffRole.GP, manages_optouts=True),
    DemoUser(
        "clerk.riverside", "Tom", "Hughes", "Z81001", StaffRole.ADMIN_CLERK, manages_optouts=True
    ),
    DemoUser("gp.hillview", "Priya", "Shah", "Z81002", StaffRole.GP, manages_optouts=True),
    DemoUser("privacy.riverside", "Helen", "Marsh", "Z81001", StaffRole.PRIVACY_OFFICER),
    DemoUser("ae.doctor", "Daniel", "Reyes", "ZAC01", StaffRole.CLINICAL_PRACTITIONER),
    DemoUser("ward.nurse", "Grace", "Adeyemi", "ZAC01", StaffRole.NURSE),
    DemoUser("district.nurse", "Siobhan", "Kelly", "ZCM01", StaffRole.NURSE),
    DemoUser("physio", "Marek", "Nowak", "ZCM01", StaffRole.HEALTH_PROFESSIONAL),
    DemoUser("mh.doctor", "Ruth", "Campbell", "ZMH01", StaffRole.CLINICAL_PRACTITIONER),
    DemoUser("social.worker", "Leon", "Baptiste", "ZSC01", StaffRole.SOCIAL_WORKER),
    DemoUser("pharmacist", "Mei", "Chen", "ZPH01", StaffRole.PHARMACIST),
    DemoUser("privacy.officer", "Oliver", "Grant", "ZSR01", StaffRole.PRIVACY_OFFICER),
    DemoUser("objections", "Nadia", "Rahman", "ZSR01", StaffRole.OBJECTIONS_OFFICER),
    DemoUser("sysadmin", "Fatima", "Hussain", "ZSR01", StaffRole.SYSTEM_ADMIN),
    # Data quality officers (ingestion/workbench.py): the programme's, and the hospital's own.
    DemoUser("dq.programme", "Joan", "Okeke", "ZSR01", StaffRole.DATA_QUALITY_OFFICER),
    DemoUser("dq.hospital", "Sam", "Patel", "ZAC01", StaffRole.DATA_QUALITY_OFFICER),
    # ---- operations (#26): feed health, replays
    DemoUser("feeds.operator", "Samuel", "Osei", "ZSR01", StaffRole.FEED_OPERATOR),
)
