<?xml version="1.0" encoding="UTF-8"?>
<!--
  HL7 v2 SIU (S12 S13 S14 S15 S16 S17 S26), in cergw's positional XML form,
  to a FHIR R4 transaction Bundle: the Patient (conditional update by PESEL
  or the first PID-3 identifier) and the Appointment (conditional update by
  its placer identifier). Field-by-field table: docs/mappings.md.

  Follows the HL7 v2-to-FHIR IG where it speaks (SCH-1/SCH-2 identifiers,
  SCH-8 appointmentType, SCH-9/10 minutesDuration, SCH-25 status via table
  0278, AIS-3 serviceType, AIP-3 / AIL-3 participants, PID patient, NTE
  comment). Our own choices, documented: start/end from TQ1-7/TQ1-8, else
  AIS-4 plus AIS-7/8; a DTM without a UTC offset takes $default_tz; the
  status falls back to the trigger event when SCH-25 is empty; participants
  are referenced by business identifier (OID system + value), as P1 does.

  HL7 v2 primitives that XSLT 1.0 does badly are the gateway's extension
  functions (namespace urn:cergw:xslt:hl7v2, docs/mappings.md): cg:comp(node, k)
  component k of a field, cg:instant(dtm, tz) DTM to instant, cg:phone(xtn)
  and cg:e164(s) phone numbers in E.164.

  Parameters: $default_tz ("+01:00").
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:date="http://exslt.org/dates-and-times" xmlns:cg="urn:cergw:xslt:hl7v2"
                extension-element-prefixes="date" xmlns="http://hl7.org/fhir" exclude-result-prefixes="date cg">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="default_tz" select="'+01:00'"/>

  <xsl:variable name="OID_PESEL" select="'2.16.840.1.113883.3.4424.1.1.616'"/>
  <xsl:variable name="OID_NPWZ" select="'2.16.840.1.113883.3.4424.1.6.2'"/>
  <xsl:variable name="OID_SPECIALTY" select="'2.16.840.1.113883.3.4424.11.2.4'"/>
  <!-- a CX's identifier system: its assigning authority's OID (CX-4.2), else this and its namespace (CX-4.1) -->
  <xsl:variable name="ASSIGNER" select="'urn:cergw:v2:assigner:'"/>
  <xsl:variable name="VISIT_KIND" select="'http://cergw.pl/fhir/CodeSystem/visit-kind'"/>
  <xsl:variable name="KIND_CODES" select="' CHECKUP EMERGENCY FOLLOWUP ROUTINE WALKIN PIERWSZA KONTYNUACJA FIRST '"/>
  <xsl:variable name="lower" select="'abcdefghijklmnopqrstuvwxyz'"/>
  <xsl:variable name="upper" select="'ABCDEFGHIJKLMNOPQRSTUVWXYZ'"/>
  <xsl:variable name="event" select="string(/HL7Message/@event)"/>
  <xsl:variable name="msh" select="/HL7Message/MSH"/>
  <xsl:variable name="sch" select="/HL7Message/SCH[1]"/>
  <xsl:variable name="pid" select="/HL7Message/PID[1]"/>

  <xsl:template match="/">
    <xsl:if test="not(/HL7Message/@type = 'SIU')">
      <xsl:message terminate="yes">unsupported message type <xsl:value-of select="/HL7Message/@type"/></xsl:message>
    </xsl:if>
    <xsl:if test="not(contains(' S12 S13 S14 S15 S16 S17 S26 ', concat(' ', $event, ' ')))">
      <xsl:message terminate="yes">unsupported SIU event <xsl:value-of select="$event"/></xsl:message>
    </xsl:if>
    <Bundle>
      <type value="transaction"/>
      <!-- the Patient only from a message that states its contact (PID-13/14, NK1): a PUT replaces
           the whole resource, so one built from a cancellation's bare PID would wipe the stored contact -->
      <xsl:if test="$pid and ($pid/PID.13[*] or $pid/PID.14[*] or /HL7Message/NK1[NK1.5[*] or NK1.6[*]])">
        <entry>
          <resource><xsl:call-template name="patient"/></resource>
          <request>
            <method value="PUT"/>
            <url value="Patient?identifier={$pid-system}|{$pid-value}"/>
          </request>
        </entry>
      </xsl:if>
      <entry>
        <resource><xsl:call-template name="appointment"/></resource>
        <request>
          <method value="PUT"/>
          <url value="Appointment?identifier={$placer-system}|{normalize-space($sch/SCH.1[1]/SCH.1.1)}"/>
        </request>
      </entry>
    </Bundle>
  </xsl:template>

  <!-- ======================================================= identifiers -->
  <!-- the patient's business identifier: the PESEL, chosen by its assigning authority (CX-4.2) or
       type (CX-5 NNPOL) in whatever repetition it stands, else the first PID-3 -->
  <xsl:variable name="pesel-cxs" select="$pid/PID.3[PID.3.4/PID.3.4.2 = $OID_PESEL or PID.3.5 = 'NNPOL' or PID.3.5 = 'PESEL']"/>
  <xsl:variable name="pesel-cx" select="$pesel-cxs[1]"/>
  <xsl:variable name="pid-cx" select="$pesel-cx | $pid/PID.3[1][not($pesel-cx)]"/>
  <xsl:variable name="pid-value" select="normalize-space($pid-cx/PID.3.1)"/>
  <xsl:variable name="pid-system" select="cg:if($pesel-cx, concat('urn:oid:', $OID_PESEL), cg:cx-system($pid-cx, $ASSIGNER))"/>
  <!-- the appointment's placer identifier system: SCH-1.3 (OID), else the sending facility's OID (MSH-4.2) -->
  <xsl:variable name="placer-system" select="cg:if($sch/SCH.1[1]/SCH.1.3 != '', concat('urn:oid:', $sch/SCH.1[1]/SCH.1.3),
    cg:if($msh/MSH.4/MSH.4.2 != '', concat('urn:oid:', $msh/MSH.4/MSH.4.2), concat('urn:cergw:v2:placer:', $msh/MSH.3/MSH.3.1)))"/>

  <!-- ========================================================== Patient -->
  <xsl:template name="patient">
    <Patient>
      <!-- every PID-3 repetition: the PESELs first (each one checked by cer.pesel), then the clinic's own -->
      <xsl:for-each select="$pesel-cxs[normalize-space(PID.3.1) != '']">
        <identifier>
          <type><coding><system value="http://terminology.hl7.org/CodeSystem/v2-0203"/><code value="NNPOL"/></coding></type>
          <system value="urn:oid:{$OID_PESEL}"/>
          <value value="{normalize-space(PID.3.1)}"/>
        </identifier>
      </xsl:for-each>
      <xsl:for-each select="$pid/PID.3[normalize-space(PID.3.1) != ''][count(. | $pesel-cxs) != count($pesel-cxs)]">
        <identifier>
          <xsl:if test="normalize-space(PID.3.5) != ''">
            <type><coding><system value="http://terminology.hl7.org/CodeSystem/v2-0203"/><code value="{normalize-space(PID.3.5)}"/></coding></type>
          </xsl:if>
          <system value="{cg:cx-system(., $ASSIGNER)}"/>
          <value value="{normalize-space(PID.3.1)}"/>
        </identifier>
      </xsl:for-each>
      <xsl:for-each select="$pid/PID.5[*]">
        <name>
          <xsl:variable name="family" select="normalize-space(concat(PID.5.1/text(), PID.5.1/PID.5.1.1))"/>
          <xsl:if test="$family != ''"><family value="{$family}"/></xsl:if>
          <xsl:if test="normalize-space(PID.5.2) != ''"><given value="{normalize-space(PID.5.2)}"/></xsl:if>
          <xsl:if test="normalize-space(PID.5.3) != ''"><given value="{normalize-space(PID.5.3)}"/></xsl:if>
        </name>
      </xsl:for-each>
      <xsl:for-each select="$pid/PID.13[*] | $pid/PID.14[*]">
        <xsl:call-template name="telecom"/>
      </xsl:for-each>
      <xsl:variable name="sex" select="string($pid/PID.8/PID.8.1)"/>
      <xsl:choose>
        <xsl:when test="$sex = 'M'"><gender value="male"/></xsl:when>
        <xsl:when test="$sex = 'F'"><gender value="female"/></xsl:when>
        <xsl:when test="$sex = 'O' or $sex = 'A'"><gender value="other"/></xsl:when>
        <xsl:when test="$sex = 'U'"><gender value="unknown"/></xsl:when>
      </xsl:choose>
      <xsl:variable name="dob" select="string($pid/PID.7/PID.7.1)"/>
      <xsl:if test="string-length($dob) &gt;= 8 and translate(substring($dob, 1, 8), '0123456789', '') = ''">
        <birthDate value="{substring($dob,1,4)}-{substring($dob,5,2)}-{substring($dob,7,2)}"/>
      </xsl:if>
      <!-- PID-11 (XAD): street (.1, or its SAD .1.1), other designation (.2), city (.3), postal code (.5), country (.6) -->
      <xsl:for-each select="$pid/PID.11[*]">
        <xsl:variable name="street" select="normalize-space(concat(PID.11.1/text(), PID.11.1/PID.11.1.1))"/>
        <address>
          <xsl:if test="$street != ''"><line value="{$street}"/></xsl:if>
          <xsl:if test="normalize-space(PID.11.2) != ''"><line value="{normalize-space(PID.11.2)}"/></xsl:if>
          <xsl:if test="normalize-space(PID.11.3) != ''"><city value="{normalize-space(PID.11.3)}"/></xsl:if>
          <xsl:if test="normalize-space(PID.11.5) != ''"><postalCode value="{normalize-space(PID.11.5)}"/></xsl:if>
          <xsl:if test="normalize-space(PID.11.6) != ''"><country value="{normalize-space(PID.11.6)}"/></xsl:if>
        </address>
      </xsl:for-each>
      <!-- NK1: a contact person (a child's parent, a carer): NK1-2 name, NK1-3 relationship (table 0063),
           NK1-5 / NK1-6 phone numbers and e-mail -->
      <xsl:for-each select="/HL7Message/NK1">
        <contact>
          <xsl:for-each select="NK1.3[1][*]">
            <relationship><xsl:call-template name="cwe-coding"><xsl:with-param name="f" select="."/>
              <xsl:with-param name="table" select="'http://terminology.hl7.org/CodeSystem/v2-0063'"/></xsl:call-template></relationship>
          </xsl:for-each>
          <xsl:for-each select="NK1.2[1][*]">
            <xsl:variable name="fam" select="normalize-space(concat(NK1.2.1/text(), NK1.2.1/NK1.2.1.1))"/>
            <name>
              <xsl:if test="$fam != ''"><family value="{$fam}"/></xsl:if>
              <xsl:if test="normalize-space(NK1.2.2) != ''"><given value="{normalize-space(NK1.2.2)}"/></xsl:if>
            </name>
          </xsl:for-each>
          <xsl:for-each select="NK1.5[*] | NK1.6[*]"><xsl:call-template name="telecom"/></xsl:for-each>
        </contact>
      </xsl:for-each>
    </Patient>
  </xsl:template>

  <!-- XTN -> ContactPoint: e-mail from XTN-4 when XTN-3 is Internet/X.400, else the phone number -->
  <xsl:template name="telecom">
    <xsl:variable name="n" select="local-name()"/>
    <xsl:variable name="equip" select="string(cg:comp(., 3))"/>
    <xsl:variable name="usecode" select="string(cg:comp(., 2))"/>
    <xsl:variable name="email" select="normalize-space(cg:comp(., 4))"/>
    <!-- the number in E.164 (CeR sends SMS and voice reminders to it): XTN-12, else country (XTN-5, Poland's
         48 when absent), area (XTN-6) and local number (XTN-7), else XTN-1 -->
    <xsl:variable name="phone" select="cg:phone(.)"/>
    <xsl:choose>
      <xsl:when test="($equip = 'Internet' or $equip = 'X.400' or $usecode = 'NET') and $email != ''">
        <telecom><system value="email"/><value value="{$email}"/></telecom>
      </xsl:when>
      <xsl:when test="$phone != ''">
        <telecom>
          <system value="phone"/>
          <value value="{$phone}"/>
          <xsl:choose>
            <xsl:when test="$equip = 'CP'"><use value="mobile"/></xsl:when>
            <xsl:when test="$usecode = 'WPN' or $n = 'PID.14' or $n = 'NK1.6'"><use value="work"/></xsl:when>
            <xsl:when test="$usecode = 'PRN'"><use value="home"/></xsl:when>
          </xsl:choose>
        </telecom>
      </xsl:when>
    </xsl:choose>
  </xsl:template>

  <!-- ====================================================== Appointment -->
  <xsl:template name="appointment">
    <Appointment>
      <!-- CeR urgency (kategoria medyczna) from TQ1-9 priority: PILNY/S -> pilny, STABILNY/R -> stabilny -->
      <xsl:variable name="prio" select="translate(string($tq1/TQ1.9/TQ1.9.1), 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')"/>
      <xsl:if test="$prio = 'PILNY' or $prio = 'S' or $prio = 'STABILNY' or $prio = 'R'">
        <extension url="http://cergw.pl/fhir/StructureDefinition/urgency">
          <valueCode>
            <xsl:attribute name="value"><xsl:choose><xsl:when test="$prio = 'PILNY' or $prio = 'S'">pilny</xsl:when><xsl:otherwise>stabilny</xsl:otherwise></xsl:choose></xsl:attribute>
          </valueCode>
        </extension>
      </xsl:if>
      <xsl:for-each select="$sch/SCH.1[SCH.1.1 != '']">
        <identifier>
          <type><coding><system value="http://terminology.hl7.org/CodeSystem/v2-0203"/><code value="PLAC"/></coding></type>
          <system value="{$placer-system}"/>
          <value value="{normalize-space(SCH.1.1)}"/>
        </identifier>
      </xsl:for-each>
      <xsl:for-each select="$sch/SCH.2[SCH.2.1 != '']">
        <identifier>
          <type><coding><system value="http://terminology.hl7.org/CodeSystem/v2-0203"/><code value="FILL"/></coding></type>
          <xsl:if test="SCH.2.3 != ''"><system value="urn:oid:{SCH.2.3}"/></xsl:if>
          <value value="{normalize-space(SCH.2.1)}"/>
        </identifier>
      </xsl:for-each>
      <status value="{$status}"/>
      <xsl:if test="$status = 'cancelled' and $sch/SCH.6[*]">
        <cancelationReason><xsl:call-template name="cwe-coding"><xsl:with-param name="f" select="$sch/SCH.6[1]"/></xsl:call-template></cancelationReason>
      </xsl:if>
      <xsl:for-each select="/HL7Message/AIS[AIS.3][1]">
        <serviceType><xsl:call-template name="cwe-coding"><xsl:with-param name="f" select="AIS.3[1]"/></xsl:call-template></serviceType>
      </xsl:for-each>
      <xsl:for-each select="/HL7Message/AIS/AIS.3[AIS.3.3 = $OID_SPECIALTY or AIS.3.3 = 'KRVIII'][1]">
        <specialty><coding><system value="urn:oid:{$OID_SPECIALTY}"/><code value="{normalize-space(AIS.3.1)}"/>
          <xsl:if test="AIS.3.2 != ''"><display value="{normalize-space(AIS.3.2)}"/></xsl:if></coding></specialty>
      </xsl:for-each>
      <!-- the visit kind: table 0276 (CHECKUP EMERGENCY FOLLOWUP ROUTINE WALKIN, the codes R4 binds to
           appointmentType) in SCH-7 (v2.3-2.5 appointment reason) or SCH-8, the gateway's own codes
           (99CGVK first/followup, CeR's PIERWSZA/KONTYNUACJA), and table 0277 (Complete Normal
           Tentative) in SCH-8; one appointmentType with every coding the message states, plus the
           gateway's visit-kind coding when the kind is known. Any other SCH-7 is the reason. -->
      <xsl:variable name="kind7" select="$sch/SCH.7[1][*][contains($KIND_CODES, concat(' ', translate(normalize-space(SCH.7.1), $lower, $upper), ' ')) or normalize-space(SCH.7.3) = 'HL70276']"/>
      <xsl:variable name="kind8" select="$sch/SCH.8[1][*]"/>
      <xsl:variable name="kinds" select="$kind8 | $kind7"/>
      <xsl:if test="$kinds">
        <xsl:variable name="codes" select="concat(' ', translate(normalize-space($kind8/SCH.8.1), $lower, $upper), ' ', translate(normalize-space($kind7/SCH.7.1), $lower, $upper), ' ')"/>
        <appointmentType>
          <xsl:for-each select="$kind8 | $kind7">
            <xsl:call-template name="kind-coding"/>
            <xsl:call-template name="kind-coding"><xsl:with-param name="at" select="3"/></xsl:call-template>
          </xsl:for-each>
          <!-- the gateway's visit-kind coding, unless the message carries one (99CGVK) -->
          <xsl:if test="not(($kind8 | $kind7)/*[. = '99CGVK'])">
            <xsl:choose>
              <xsl:when test="contains($codes, ' FOLLOWUP ') or contains($codes, ' KONTYNUACJA ')"><coding><system value="{$VISIT_KIND}"/><code value="followup"/></coding></xsl:when>
              <xsl:when test="contains($codes, ' PIERWSZA ')"><coding><system value="{$VISIT_KIND}"/><code value="first"/></coding></xsl:when>
            </xsl:choose>
          </xsl:if>
        </appointmentType>
      </xsl:if>
      <xsl:if test="$sch/SCH.7[1][*] and not($kind7)">
        <reasonCode><xsl:call-template name="cwe-coding"><xsl:with-param name="f" select="$sch/SCH.7[1]"/></xsl:call-template></reasonCode>
      </xsl:if>
      <xsl:if test="$start != ''"><start value="{$start}"/></xsl:if>
      <xsl:if test="$end != ''"><end value="{$end}"/></xsl:if>
      <xsl:if test="$minutes &gt; 0"><minutesDuration value="{$minutes}"/></xsl:if>
      <!-- every NTE-3 of the NTE segments right after an SCH or TQ1, one per line; each run of
           NTEs is walked forward from its segment, so a long run costs linear time -->
      <xsl:variable name="notes"><xsl:apply-templates mode="note" select="/HL7Message/*[self::SCH or self::TQ1]/following-sibling::*[1][self::NTE]"/></xsl:variable>
      <xsl:if test="string($notes) != ''">
        <comment value="{substring($notes, 2)}"/>
      </xsl:if>
      <!-- the e-referral (e-skierowanie) from SCH-26 placer order number: basedOn by business identifier -->
      <xsl:for-each select="$sch/SCH.26[SCH.26.1 != ''][1]">
        <basedOn>
          <type value="ServiceRequest"/>
          <identifier>
            <xsl:if test="SCH.26.3 != ''"><system value="urn:oid:{SCH.26.3}"/></xsl:if>
            <value value="{normalize-space(SCH.26.1)}"/>
          </identifier>
        </basedOn>
      </xsl:for-each>
      <xsl:if test="$pid">
        <participant>
          <actor>
            <type value="Patient"/>
            <identifier><system value="{$pid-system}"/><value value="{$pid-value}"/></identifier>
            <xsl:variable name="fam" select="normalize-space(concat($pid/PID.5[1]/PID.5.1/text(), $pid/PID.5[1]/PID.5.1/PID.5.1.1))"/>
            <xsl:if test="$fam != ''"><display value="{normalize-space(concat($pid/PID.5[1]/PID.5.2, ' ', $fam))}"/></xsl:if>
          </actor>
          <status value="{$participant-status}"/>
        </participant>
      </xsl:if>
      <xsl:for-each select="/HL7Message/AIP[AIP.3]">
        <participant>
          <xsl:if test="AIP.4[*]"><type><xsl:call-template name="cwe-coding"><xsl:with-param name="f" select="AIP.4[1]"/></xsl:call-template></type></xsl:if>
          <actor>
            <type value="Practitioner"/>
            <identifier>
              <xsl:choose>
                <xsl:when test="AIP.3[1]/AIP.3.9/AIP.3.9.2 != ''"><system value="urn:oid:{AIP.3[1]/AIP.3.9/AIP.3.9.2}"/></xsl:when>
                <xsl:when test="AIP.3[1]/AIP.3.13 = 'NPWZ'"><system value="urn:oid:{$OID_NPWZ}"/></xsl:when>
              </xsl:choose>
              <value value="{normalize-space(AIP.3[1]/AIP.3.1)}"/>
            </identifier>
            <!-- XCN: .6 prefix and .7 degree ("dr n. med.", "lek.") stand before .3 given, .4 middle, .2 family -->
            <xsl:variable name="fam" select="normalize-space(concat(AIP.3[1]/AIP.3.2/text(), AIP.3[1]/AIP.3.2/AIP.3.2.1))"/>
            <xsl:if test="$fam != ''"><display value="{normalize-space(concat(AIP.3[1]/AIP.3.6, ' ', AIP.3[1]/AIP.3.7, ' ', AIP.3[1]/AIP.3.3, ' ', AIP.3[1]/AIP.3.4, ' ', $fam))}"/></xsl:if>
          </actor>
          <status value="{$participant-status}"/>
        </participant>
      </xsl:for-each>
      <xsl:for-each select="/HL7Message/AIL[AIL.3]">
        <participant>
          <actor>
            <type value="Location"/>
            <xsl:variable name="loc" select="normalize-space(concat(AIL.3[1]/AIL.3.4, ' ', AIL.3[1]/AIL.3.1, ' ', AIL.3[1]/AIL.3.2))"/>
            <identifier><value value="{normalize-space(AIL.3[1]/AIL.3.1)}"/></identifier>
            <xsl:if test="$loc != ''"><display value="{$loc}"/></xsl:if>
          </actor>
          <status value="{$participant-status}"/>
        </participant>
      </xsl:for-each>
    </Appointment>
  </xsl:template>

  <!-- a run of NTE segments: a new line and NTE-3 for each repetition, then the next segment if it is an NTE;
       highlighting (\H\ on, \N\ off) has no place in FHIR's plain text -->
  <xsl:template match="NTE" mode="note">
    <xsl:for-each select="NTE.3"><xsl:text>&#10;</xsl:text>
      <xsl:call-template name="plain"><xsl:with-param name="s" select="string(.)"/></xsl:call-template></xsl:for-each>
    <xsl:apply-templates mode="note" select="following-sibling::*[1][self::NTE]"/>
  </xsl:template>

  <!-- |s| without the highlighting escapes \H\ and \N\ -->
  <xsl:template name="plain">
    <xsl:param name="s"/>
    <xsl:choose>
      <xsl:when test="contains($s, '\H\')">
        <xsl:call-template name="plain"><xsl:with-param name="s" select="concat(substring-before($s, '\H\'), substring-after($s, '\H\'))"/></xsl:call-template>
      </xsl:when>
      <xsl:when test="contains($s, '\N\')">
        <xsl:call-template name="plain"><xsl:with-param name="s" select="concat(substring-before($s, '\N\'), substring-after($s, '\N\'))"/></xsl:call-template>
      </xsl:when>
      <xsl:otherwise><xsl:value-of select="$s"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <!-- SCH-25 filler status via table 0278, else from the trigger event -->
  <xsl:variable name="sch25" select="string($sch/SCH.25/SCH.25.1)"/>
  <xsl:variable name="status" select="cg:map($sch25, 'Pending=pending Waitlist=waitlist Booked=booked Started=checked-in
    Complete=fulfilled Cancelled=cancelled Dc=cancelled Deleted=entered-in-error Noshow=noshow',
    cg:map($event, 'S15=cancelled S16=cancelled S17=entered-in-error S26=noshow', 'booked'))"/>
  <xsl:variable name="participant-status"
    select="cg:map($status, 'cancelled=declined entered-in-error=declined pending=tentative waitlist=tentative', 'accepted')"/>

  <!-- start/end: TQ1-7/TQ1-8, else AIS-4 (+ AIS-7 duration in AIS-8 units) -->
  <xsl:variable name="tq1" select="/HL7Message/TQ1[1]"/>
  <xsl:variable name="ais" select="/HL7Message/AIS[1]"/>
  <xsl:variable name="start" select="cg:instant(cg:if($tq1/TQ1.7/TQ1.7.1 != '', string($tq1/TQ1.7/TQ1.7.1), string($ais/AIS.4/AIS.4.1)), $default_tz)"/>
  <!-- end: TQ1-8, else start plus the duration (R4's app-2: start and end both, or neither) -->
  <xsl:variable name="end" select="cg:if($tq1/TQ1.8/TQ1.8.1 != '', cg:instant($tq1/TQ1.8/TQ1.8.1, $default_tz),
    cg:if($start != '' and $minutes &gt; 0, date:add($start, concat('PT', $minutes, 'M')), ''))"/>
  <!-- SCH-9 duration in SCH-10 units (minutes, seconds or hours), else AIS-7/AIS-8 -->
  <xsl:variable name="minutes" select="cg:minutes(normalize-space(($sch/SCH.9/SCH.9.1 | $ais/AIS.7/AIS.7.1)[1]),
    normalize-space(($sch/SCH.10/SCH.10.1 | $ais/AIS.8/AIS.8.1)[1]))"/>


  <!-- A visit-kind CWE (SCH-7 or SCH-8) -> coding: a code of table 0276 or 0277 without a coding system
       takes that table's (case as the table writes it); 99CGVK is the gateway's visit-kind system -->
  <xsl:template name="kind-coding">
    <xsl:param name="at" select="0"/>
    <xsl:variable name="code" select="normalize-space(cg:comp(., 1 + $at))"/>
    <xsl:variable name="up" select="translate($code, $lower, $upper)"/>
    <xsl:variable name="sys" select="normalize-space(cg:comp(., 3 + $at))"/>
    <xsl:variable name="text" select="normalize-space(cg:comp(., 2 + $at))"/>
    <xsl:choose>
      <xsl:when test="$code != '' and $sys = '99CGVK'">
        <coding><system value="{$VISIT_KIND}"/><code value="{$code}"/><xsl:if test="$text != ''"><display value="{$text}"/></xsl:if></coding>
      </xsl:when>
      <xsl:when test="$code != '' and ($sys = '' or $sys = 'HL70276') and contains(' CHECKUP EMERGENCY FOLLOWUP ROUTINE WALKIN ', concat(' ', $up, ' '))">
        <coding><system value="http://terminology.hl7.org/CodeSystem/v2-0276"/><code value="{$up}"/><xsl:if test="$text != ''"><display value="{$text}"/></xsl:if></coding>
      </xsl:when>
      <xsl:when test="$code != '' and ($sys = '' or $sys = 'HL70277') and contains(' COMPLETE NORMAL TENTATIVE ', concat(' ', $up, ' '))">
        <coding><system value="http://terminology.hl7.org/CodeSystem/v2-0277"/>
          <code value="{concat(substring($up, 1, 1), translate(substring($up, 2), $upper, $lower))}"/><xsl:if test="$text != ''"><display value="{$text}"/></xsl:if></coding>
      </xsl:when>
      <xsl:when test="$at = 0"><xsl:call-template name="cwe-coding"><xsl:with-param name="f" select="."/></xsl:call-template></xsl:when>
      <xsl:when test="$code != ''"><xsl:call-template name="coding-of"><xsl:with-param name="code" select="$code"/>
        <xsl:with-param name="text" select="$text"/><xsl:with-param name="sys" select="$sys"/></xsl:call-template></xsl:when>
    </xsl:choose>
  </xsl:template>

  <!-- CWE/CE -> CodeableConcept content: coding (code, display, system) and text -->
  <xsl:template name="cwe-coding">
    <xsl:param name="f"/>
    <xsl:param name="table" select="''"/>
    <xsl:variable name="code" select="normalize-space(cg:comp($f, 1))"/>
    <xsl:variable name="text" select="normalize-space(cg:comp($f, 2))"/>
    <xsl:variable name="sys" select="normalize-space(cg:comp($f, 3))"/>
    <xsl:if test="$code != ''">
      <xsl:call-template name="coding-of"><xsl:with-param name="code" select="$code"/><xsl:with-param name="text" select="$text"/>
        <xsl:with-param name="sys" select="$sys"/><xsl:with-param name="table" select="$table"/></xsl:call-template>
    </xsl:if>
    <xsl:if test="$code = '' and $text != ''"><text value="{$text}"/></xsl:if>
  </xsl:template>

  <!-- a code, its text and its CWE-3 coding system name (table 0396) -> Coding -->
  <xsl:template name="coding-of">
    <xsl:param name="code"/>
    <xsl:param name="text"/>
    <xsl:param name="sys"/>
    <xsl:param name="table" select="''"/>
    <coding>
      <xsl:choose>
        <xsl:when test="$sys = 'SCT'"><system value="http://snomed.info/sct"/></xsl:when>
        <xsl:when test="$sys = 'LN'"><system value="http://loinc.org"/></xsl:when>
        <xsl:when test="$sys = '99CGVK'"><system value="{$VISIT_KIND}"/></xsl:when>
        <xsl:when test="starts-with($sys, 'HL7') and string-length($sys) = 7"><system value="http://terminology.hl7.org/CodeSystem/v2-{substring($sys, 4)}"/></xsl:when>
        <xsl:when test="$sys != '' and translate($sys, '0123456789.', '') = ''"><system value="urn:oid:{$sys}"/></xsl:when>
        <xsl:when test="$table != '' and $sys = ''"><system value="{$table}"/></xsl:when>
      </xsl:choose>
      <code value="{$code}"/>
      <xsl:if test="$text != ''"><display value="{$text}"/></xsl:if>
    </coding>
  </xsl:template>
</xsl:stylesheet>
