<?xml version="1.0" encoding="UTF-8"?>
<!--
  FHIR R4 (an Appointment, alone or in a Bundle with its Patient) to an HL7 v2.5.1
  SIU message in cergw's positional XML form, serialised to ER7 by the engine.
  Used for notifications back to clinics that speak HL7 v2 and by
  cergw translate (to hl7v2). The reverse of siu-to-fhir.xsl where that one
  speaks; field-by-field table: docs/mappings.md.

  Parameters: $control_id (MSH-10), $now (MSH-7, YYYYMMDDHHMMSS), $receiving_app
  (MSH-5), $event (SIU trigger; empty: from Appointment.status).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:f="http://hl7.org/fhir" exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="control_id" select="'CERGW0001'"/>
  <xsl:param name="now" select="'20260101000000'"/>
  <xsl:param name="receiving_app" select="''"/>
  <xsl:param name="event" select="''"/>

  <xsl:variable name="OID_PESEL" select="'2.16.840.1.113883.3.4424.1.1.616'"/>
  <xsl:variable name="OID_SPECIALTY" select="'urn:oid:2.16.840.1.113883.3.4424.11.2.4'"/>
  <xsl:variable name="URGENCY" select="'http://cergw.pl/fhir/StructureDefinition/urgency'"/>
  <xsl:variable name="VISIT_KIND" select="'http://cergw.pl/fhir/CodeSystem/visit-kind'"/>
  <xsl:variable name="KIND_CODES" select="' CHECKUP EMERGENCY FOLLOWUP ROUTINE WALKIN PIERWSZA KONTYNUACJA '"/>
  <xsl:variable name="lower" select="'abcdefghijklmnopqrstuvwxyz'"/>
  <xsl:variable name="upper" select="'ABCDEFGHIJKLMNOPQRSTUVWXYZ'"/>
  <xsl:variable name="a" select="(//f:Appointment)[1]"/>
  <xsl:variable name="status" select="string($a/f:status/@value)"/>
  <xsl:variable name="pt-actor" select="$a/f:participant/f:actor[f:type/@value = 'Patient' or starts-with(f:reference/@value, 'Patient/')][1]"/>
  <!-- the Patient: the Bundle's with the participant's identifier, else the contained one the actor references -->
  <xsl:variable name="patient" select="(//f:Patient[f:identifier[f:system/@value = $pt-actor/f:identifier/f:system/@value and f:value/@value = $pt-actor/f:identifier/f:value/@value]] | $a/f:contained/f:Patient[concat('#', f:id/@value) = $pt-actor/f:reference/@value])[1]"/>
  <xsl:variable name="ev">
    <xsl:choose>
      <xsl:when test="$event != ''"><xsl:value-of select="$event"/></xsl:when>
      <xsl:when test="$status = 'cancelled'">S15</xsl:when>
      <xsl:when test="$status = 'noshow'">S26</xsl:when>
      <xsl:when test="$status = 'entered-in-error'">S17</xsl:when>
      <xsl:otherwise>S12</xsl:otherwise>
    </xsl:choose>
  </xsl:variable>

  <xsl:template match="/">
    <xsl:if test="not($a)"><xsl:message terminate="yes">no Appointment to express as SIU</xsl:message></xsl:if>
    <HL7Message version="2.5.1" type="SIU" event="{$ev}" structure="SIU_S12">
      <MSH>
        <MSH.1>|</MSH.1><MSH.2>^~\&amp;</MSH.2>
        <MSH.3><MSH.3.1>CERGW</MSH.3.1></MSH.3>
        <MSH.4><MSH.4.1>CER</MSH.4.1></MSH.4>
        <xsl:if test="$receiving_app != ''"><MSH.5><MSH.5.1><xsl:value-of select="$receiving_app"/></MSH.5.1></MSH.5></xsl:if>
        <MSH.7><MSH.7.1><xsl:value-of select="$now"/></MSH.7.1></MSH.7>
        <MSH.9><MSH.9.1>SIU</MSH.9.1><MSH.9.2><xsl:value-of select="$ev"/></MSH.9.2><MSH.9.3>SIU_S12</MSH.9.3></MSH.9>
        <MSH.10><MSH.10.1><xsl:value-of select="$control_id"/></MSH.10.1></MSH.10>
        <MSH.11><MSH.11.1>P</MSH.11.1></MSH.11>
        <MSH.12><MSH.12.1>2.5.1</MSH.12.1></MSH.12>
      </MSH>
      <SCH>
        <xsl:variable name="plac" select="($a/f:identifier[f:type/f:coding/f:code/@value = 'PLAC'] | $a/f:identifier[not(f:type)])[1]"/>
        <xsl:variable name="fill" select="$a/f:identifier[f:type/f:coding/f:code/@value = 'FILL'][1]"/>
        <xsl:if test="$plac"><SCH.1><SCH.1.1><xsl:value-of select="$plac/f:value/@value"/></SCH.1.1>
          <xsl:call-template name="oid"><xsl:with-param name="n" select="'SCH.1.3'"/><xsl:with-param name="sys" select="$plac/f:system/@value"/></xsl:call-template></SCH.1></xsl:if>
        <xsl:if test="$fill"><SCH.2><SCH.2.1><xsl:value-of select="$fill/f:value/@value"/></SCH.2.1>
          <xsl:call-template name="oid"><xsl:with-param name="n" select="'SCH.2.3'"/><xsl:with-param name="sys" select="$fill/f:system/@value"/></xsl:call-template></SCH.2></xsl:if>
        <xsl:for-each select="$a/f:cancelationReason[1]"><SCH.6><xsl:call-template name="cwe"><xsl:with-param name="n" select="'SCH.6'"/></xsl:call-template></SCH.6></xsl:for-each>
        <!-- the visit kind: a table 0276 coding (which R4's appointmentType binds to) or another visit-kind code
             (PIERWSZA, KONTYNUACJA) is SCH-7, appointment reason, else SCH-7 is the reason code; SCH-8,
             appointment type, takes the table 0277 coding, the gateway's visit kind (99CGVK) and any other
             coding: the first as the CWE's identifier (.1-.3), the second as its alternate (.4-.6) -->
        <xsl:variable name="types" select="$a/f:appointmentType[1]/f:coding[f:code/@value]"/>
        <xsl:variable name="is276" select="'http://terminology.hl7.org/CodeSystem/v2-0276'"/>
        <xsl:variable name="is277" select="'http://terminology.hl7.org/CodeSystem/v2-0277'"/>
        <xsl:variable name="kindish" select="$types[not(f:system/@value = $is277 or f:system/@value = $VISIT_KIND)][contains($KIND_CODES, concat(' ', translate(f:code/@value, $lower, $upper), ' '))]"/>
        <xsl:variable name="c7" select="($kindish[f:system/@value = $is276] | $kindish[not($kindish/f:system/@value = $is276)])[1]"/>
        <xsl:variable name="v277" select="$types[f:system/@value = $is277][1]"/>
        <xsl:variable name="vkind" select="$types[f:system/@value = $VISIT_KIND][1]"/>
        <xsl:variable name="rest" select="$types[not(f:system/@value = $is277 or f:system/@value = $VISIT_KIND)][count(. | $kindish) != count($kindish)][1]"/>
        <xsl:variable name="c8a" select="($v277 | $vkind[not($v277)] | $rest[not($v277 or $vkind)])"/>
        <xsl:variable name="c8b" select="($vkind[$v277] | $rest[($v277 and not($vkind)) or ($vkind and not($v277))])"/>
        <xsl:choose>
          <xsl:when test="$c7"><SCH.7><xsl:for-each select="$c7"><xsl:call-template name="coding"><xsl:with-param name="n" select="'SCH.7'"/></xsl:call-template></xsl:for-each></SCH.7></xsl:when>
          <xsl:otherwise><xsl:for-each select="$a/f:reasonCode[1]"><SCH.7><xsl:call-template name="cwe"><xsl:with-param name="n" select="'SCH.7'"/></xsl:call-template></SCH.7></xsl:for-each></xsl:otherwise>
        </xsl:choose>
        <xsl:if test="$c8a">
          <SCH.8>
            <xsl:for-each select="$c8a"><xsl:call-template name="coding"><xsl:with-param name="n" select="'SCH.8'"/></xsl:call-template></xsl:for-each>
            <xsl:for-each select="$c8b"><xsl:call-template name="coding"><xsl:with-param name="n" select="'SCH.8'"/><xsl:with-param name="at" select="3"/></xsl:call-template></xsl:for-each>
          </SCH.8>
        </xsl:if>
        <xsl:if test="$a/f:minutesDuration/@value"><SCH.9><SCH.9.1><xsl:value-of select="$a/f:minutesDuration/@value"/></SCH.9.1></SCH.9><SCH.10><SCH.10.1>min</SCH.10.1></SCH.10></xsl:if>
        <SCH.25><SCH.25.1>
          <xsl:choose>
            <xsl:when test="$status = 'pending' or $status = 'proposed'">Pending</xsl:when>
            <xsl:when test="$status = 'waitlist'">Waitlist</xsl:when>
            <xsl:when test="$status = 'checked-in' or $status = 'arrived'">Started</xsl:when>
            <xsl:when test="$status = 'fulfilled'">Complete</xsl:when>
            <xsl:when test="$status = 'cancelled'">Cancelled</xsl:when>
            <xsl:when test="$status = 'entered-in-error'">Deleted</xsl:when>
            <xsl:when test="$status = 'noshow'">Noshow</xsl:when>
            <xsl:otherwise>Booked</xsl:otherwise>
          </xsl:choose>
        </SCH.25.1></SCH.25>
        <xsl:for-each select="$a/f:basedOn[f:identifier/f:value/@value][1]">
          <SCH.26><SCH.26.1><xsl:value-of select="f:identifier/f:value/@value"/></SCH.26.1>
            <xsl:call-template name="oid"><xsl:with-param name="n" select="'SCH.26.3'"/><xsl:with-param name="sys" select="f:identifier/f:system/@value"/></xsl:call-template></SCH.26>
        </xsl:for-each>
      </SCH>
      <xsl:if test="$a/f:start/@value or $a/f:extension[@url = $URGENCY]">
        <TQ1>
          <TQ1.1><TQ1.1.1>1</TQ1.1.1></TQ1.1>
          <xsl:if test="$a/f:start/@value"><TQ1.7><TQ1.7.1><xsl:call-template name="dtm"><xsl:with-param name="i" select="$a/f:start/@value"/></xsl:call-template></TQ1.7.1></TQ1.7></xsl:if>
          <xsl:if test="$a/f:end/@value"><TQ1.8><TQ1.8.1><xsl:call-template name="dtm"><xsl:with-param name="i" select="$a/f:end/@value"/></xsl:call-template></TQ1.8.1></TQ1.8></xsl:if>
          <xsl:for-each select="$a/f:extension[@url = $URGENCY]/f:valueCode">
            <TQ1.9><TQ1.9.1><xsl:value-of select="translate(@value, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')"/></TQ1.9.1></TQ1.9>
          </xsl:for-each>
        </TQ1>
      </xsl:if>
      <xsl:if test="$a/f:comment/@value"><NTE><NTE.1><NTE.1.1>1</NTE.1.1></NTE.1><NTE.3><NTE.3.1><xsl:value-of select="$a/f:comment/@value"/></NTE.3.1></NTE.3></NTE></xsl:if>
      <xsl:if test="$pt-actor">
        <PID>
          <PID.1><PID.1.1>1</PID.1.1></PID.1>
          <!-- the identifier the Appointment names first, then the Patient's others (the clinic's own numbers) -->
          <xsl:for-each select="$pt-actor/f:identifier">
            <xsl:call-template name="cx"/>
          </xsl:for-each>
          <xsl:for-each select="$patient/f:identifier[not(f:system/@value = $pt-actor/f:identifier/f:system/@value and f:value/@value = $pt-actor/f:identifier/f:value/@value)]">
            <xsl:call-template name="cx"/>
          </xsl:for-each>
          <xsl:for-each select="$patient/f:name[1]">
            <PID.5><PID.5.1><xsl:value-of select="f:family/@value"/></PID.5.1>
              <xsl:if test="f:given[1]"><PID.5.2><xsl:value-of select="f:given[1]/@value"/></PID.5.2></xsl:if>
              <xsl:if test="f:given[2]"><PID.5.3><xsl:value-of select="f:given[2]/@value"/></PID.5.3></xsl:if></PID.5>
          </xsl:for-each>
          <xsl:if test="$patient/f:birthDate/@value"><PID.7><PID.7.1><xsl:value-of select="translate($patient/f:birthDate/@value, '-', '')"/></PID.7.1></PID.7></xsl:if>
          <xsl:variable name="g" select="string($patient/f:gender/@value)"/>
          <xsl:if test="$g != ''"><PID.8><PID.8.1><xsl:choose><xsl:when test="$g = 'male'">M</xsl:when><xsl:when test="$g = 'female'">F</xsl:when><xsl:when test="$g = 'other'">O</xsl:when><xsl:otherwise>U</xsl:otherwise></xsl:choose></PID.8.1></PID.8></xsl:if>
          <xsl:for-each select="$patient/f:address">
            <PID.11>
              <xsl:if test="f:line[1]"><PID.11.1><xsl:value-of select="f:line[1]/@value"/></PID.11.1></xsl:if>
              <xsl:if test="f:line[2]"><PID.11.2><xsl:value-of select="f:line[2]/@value"/></PID.11.2></xsl:if>
              <xsl:if test="f:city"><PID.11.3><xsl:value-of select="f:city/@value"/></PID.11.3></xsl:if>
              <xsl:if test="f:postalCode"><PID.11.5><xsl:value-of select="f:postalCode/@value"/></PID.11.5></xsl:if>
              <xsl:if test="f:country"><PID.11.6><xsl:value-of select="f:country/@value"/></PID.11.6></xsl:if>
            </PID.11>
          </xsl:for-each>
          <xsl:for-each select="$patient/f:telecom[f:system/@value = 'phone'][1]">
            <PID.13><PID.13.2><xsl:choose><xsl:when test="f:use/@value = 'work'">WPN</xsl:when><xsl:otherwise>PRN</xsl:otherwise></xsl:choose></PID.13.2>
              <PID.13.3><xsl:choose><xsl:when test="f:use/@value = 'mobile'">CP</xsl:when><xsl:otherwise>PH</xsl:otherwise></xsl:choose></PID.13.3>
              <PID.13.12><xsl:value-of select="f:value/@value"/></PID.13.12></PID.13>
          </xsl:for-each>
          <xsl:for-each select="$patient/f:telecom[f:system/@value = 'email'][1]">
            <PID.13><PID.13.2>NET</PID.13.2><PID.13.3>Internet</PID.13.3><PID.13.4><xsl:value-of select="f:value/@value"/></PID.13.4></PID.13>
          </xsl:for-each>
        </PID>
        <!-- contact persons (a child's parent) as NK1: NK1-2 name, NK1-3 relationship, NK1-5 phone / e-mail -->
        <xsl:for-each select="$patient/f:contact[f:telecom]">
          <NK1>
            <NK1.1><NK1.1.1><xsl:value-of select="position()"/></NK1.1.1></NK1.1>
            <xsl:for-each select="f:name[1]">
              <xsl:choose>
                <xsl:when test="f:family/@value"><NK1.2><NK1.2.1><xsl:value-of select="f:family/@value"/></NK1.2.1>
                  <xsl:if test="f:given[1]"><NK1.2.2><xsl:value-of select="f:given[1]/@value"/></NK1.2.2></xsl:if></NK1.2></xsl:when>
                <xsl:when test="f:text/@value"><NK1.2><NK1.2.1><xsl:value-of select="f:text/@value"/></NK1.2.1></NK1.2></xsl:when>
              </xsl:choose>
            </xsl:for-each>
            <xsl:for-each select="f:relationship[1][f:coding]"><NK1.3><xsl:call-template name="cwe"><xsl:with-param name="n" select="'NK1.3'"/></xsl:call-template></NK1.3></xsl:for-each>
            <xsl:for-each select="f:telecom[f:system/@value = 'phone']">
              <NK1.5><NK1.5.2><xsl:choose><xsl:when test="f:use/@value = 'work'">WPN</xsl:when><xsl:otherwise>PRN</xsl:otherwise></xsl:choose></NK1.5.2>
                <NK1.5.3><xsl:choose><xsl:when test="f:use/@value = 'mobile'">CP</xsl:when><xsl:otherwise>PH</xsl:otherwise></xsl:choose></NK1.5.3>
                <NK1.5.12><xsl:value-of select="f:value/@value"/></NK1.5.12></NK1.5>
            </xsl:for-each>
            <xsl:for-each select="f:telecom[f:system/@value = 'email']">
              <NK1.5><NK1.5.2>NET</NK1.5.2><NK1.5.3>Internet</NK1.5.3><NK1.5.4><xsl:value-of select="f:value/@value"/></NK1.5.4></NK1.5>
            </xsl:for-each>
          </NK1>
        </xsl:for-each>
      </xsl:if>
      <RGS><RGS.1><RGS.1.1>1</RGS.1.1></RGS.1></RGS>
      <xsl:variable name="svc" select="($a/f:specialty/f:coding[f:system/@value = $OID_SPECIALTY] | $a/f:serviceType/f:coding)[1]"/>
      <xsl:if test="$svc">
        <AIS>
          <AIS.1><AIS.1.1>1</AIS.1.1></AIS.1>
          <AIS.3><AIS.3.1><xsl:value-of select="$svc/f:code/@value"/></AIS.3.1>
            <xsl:if test="$svc/f:display/@value"><AIS.3.2><xsl:value-of select="$svc/f:display/@value"/></AIS.3.2></xsl:if>
            <xsl:call-template name="oid"><xsl:with-param name="n" select="'AIS.3.3'"/><xsl:with-param name="sys" select="$svc/f:system/@value"/></xsl:call-template></AIS.3>
          <xsl:if test="$a/f:start/@value"><AIS.4><AIS.4.1><xsl:call-template name="dtm"><xsl:with-param name="i" select="$a/f:start/@value"/></xsl:call-template></AIS.4.1></AIS.4></xsl:if>
        </AIS>
      </xsl:if>
      <xsl:for-each select="$a/f:participant[f:actor/f:type/@value = 'Practitioner']">
        <AIP>
          <AIP.1><AIP.1.1><xsl:value-of select="position()"/></AIP.1.1></AIP.1>
          <AIP.3><AIP.3.1><xsl:value-of select="f:actor/f:identifier/f:value/@value"/></AIP.3.1>
            <xsl:if test="f:actor/f:display/@value"><xsl:call-template name="xcn-name"><xsl:with-param name="rest" select="normalize-space(f:actor/f:display/@value)"/></xsl:call-template></xsl:if>
            <xsl:variable name="sys" select="substring-after(f:actor/f:identifier/f:system/@value, 'urn:oid:')"/>
            <xsl:if test="$sys != ''"><AIP.3.9><AIP.3.9.2><xsl:value-of select="$sys"/></AIP.3.9.2><AIP.3.9.3>ISO</AIP.3.9.3></AIP.3.9></xsl:if></AIP.3>
          <xsl:for-each select="f:type[1]"><AIP.4><xsl:call-template name="cwe"><xsl:with-param name="n" select="'AIP.4'"/></xsl:call-template></AIP.4></xsl:for-each>
        </AIP>
      </xsl:for-each>
      <xsl:for-each select="$a/f:participant[f:actor/f:type/@value = 'Location']">
        <AIL>
          <AIL.1><AIL.1.1><xsl:value-of select="position()"/></AIL.1.1></AIL.1>
          <AIL.3><AIL.3.1><xsl:value-of select="f:actor/f:identifier/f:value/@value"/></AIL.3.1></AIL.3>
        </AIL>
      </xsl:for-each>
    </HL7Message>
  </xsl:template>

  <!-- an Identifier (context) -> a PID-3 repetition: CX-1 value, CX-4 assigning authority (HD: namespace,
       OID, ISO), CX-5 identifier type (NNPOL for the PESEL) -->
  <xsl:template name="cx">
    <xsl:variable name="sys" select="string(f:system/@value)"/>
    <xsl:variable name="oid" select="substring-after($sys, 'urn:oid:')"/>
    <PID.3>
      <PID.3.1><xsl:value-of select="f:value/@value"/></PID.3.1>
      <xsl:choose>
        <xsl:when test="$oid = $OID_PESEL"><PID.3.4><PID.3.4.1>MZ</PID.3.4.1><PID.3.4.2><xsl:value-of select="$oid"/></PID.3.4.2><PID.3.4.3>ISO</PID.3.4.3></PID.3.4></xsl:when>
        <xsl:when test="$oid != ''"><PID.3.4><PID.3.4.2><xsl:value-of select="$oid"/></PID.3.4.2><PID.3.4.3>ISO</PID.3.4.3></PID.3.4></xsl:when>
        <xsl:when test="starts-with($sys, 'urn:cergw:v2:assigner:')"><PID.3.4><PID.3.4.1><xsl:value-of select="substring-after($sys, 'urn:cergw:v2:assigner:')"/></PID.3.4.1></PID.3.4></xsl:when>
      </xsl:choose>
      <xsl:choose>
        <xsl:when test="$oid = $OID_PESEL"><PID.3.5>NNPOL</PID.3.5></xsl:when>
        <xsl:when test="f:type/f:coding/f:code/@value"><PID.3.5><xsl:value-of select="f:type/f:coding/f:code/@value"/></PID.3.5></xsl:when>
      </xsl:choose>
    </PID.3>
  </xsl:template>

  <!-- A practitioner's display name -> XCN-2 family (the last word), XCN-3 given names, XCN-6 prefix:
       the leading titles, words that begin in lower case or end in a full stop ("dr n. med.", "lek.",
       "prof. dr hab."), which are neither given nor family names -->
  <xsl:template name="xcn-name">
    <xsl:param name="rest"/>
    <xsl:param name="prefix" select="''"/>
    <xsl:variable name="word" select="substring-before(concat($rest, ' '), ' ')"/>
    <xsl:variable name="first" select="substring($word, 1, 1)"/>
    <xsl:choose>
      <xsl:when test="contains($rest, ' ') and (substring($word, string-length($word)) = '.' or
                      contains('abcdefghijklmnopqrstuvwxyząćęłńóśźż', $first))">
        <xsl:call-template name="xcn-name">
          <xsl:with-param name="rest" select="substring-after($rest, ' ')"/>
          <xsl:with-param name="prefix" select="normalize-space(concat($prefix, ' ', $word))"/>
        </xsl:call-template>
      </xsl:when>
      <xsl:otherwise>
        <xsl:variable name="family"><xsl:call-template name="last-word"><xsl:with-param name="s" select="$rest"/></xsl:call-template></xsl:variable>
        <AIP.3.2><xsl:value-of select="$family"/></AIP.3.2>
        <xsl:variable name="given" select="normalize-space(substring($rest, 1, string-length($rest) - string-length($family)))"/>
        <xsl:if test="$given != ''"><AIP.3.3><xsl:value-of select="$given"/></AIP.3.3></xsl:if>
        <xsl:if test="$prefix != ''"><AIP.3.6><xsl:value-of select="$prefix"/></AIP.3.6></xsl:if>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>
  <xsl:template name="last-word">
    <xsl:param name="s"/>
    <xsl:choose>
      <xsl:when test="contains($s, ' ')"><xsl:call-template name="last-word"><xsl:with-param name="s" select="substring-after($s, ' ')"/></xsl:call-template></xsl:when>
      <xsl:otherwise><xsl:value-of select="$s"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <!-- urn:oid:1.2.3 -> component n = 1.2.3 -->
  <xsl:template name="oid">
    <xsl:param name="n"/>
    <xsl:param name="sys"/>
    <xsl:if test="starts-with($sys, 'urn:oid:')"><xsl:element name="{$n}"><xsl:value-of select="substring-after($sys, 'urn:oid:')"/></xsl:element></xsl:if>
  </xsl:template>

  <!-- CodeableConcept (context) -> CWE components n.1 code, n.2 display/text, n.3 system -->
  <xsl:template name="cwe">
    <xsl:param name="n"/>
    <xsl:variable name="c" select="f:coding[1]"/>
    <xsl:if test="$c/f:code/@value"><xsl:element name="{$n}.1"><xsl:value-of select="$c/f:code/@value"/></xsl:element></xsl:if>
    <xsl:choose>
      <xsl:when test="$c/f:display/@value"><xsl:element name="{$n}.2"><xsl:value-of select="$c/f:display/@value"/></xsl:element></xsl:when>
      <xsl:when test="f:text/@value"><xsl:element name="{$n}.2"><xsl:value-of select="f:text/@value"/></xsl:element></xsl:when>
    </xsl:choose>
    <xsl:for-each select="$c"><xsl:call-template name="cwe-system"><xsl:with-param name="n" select="$n"/></xsl:call-template></xsl:for-each>
  </xsl:template>

  <!-- one Coding (context) -> CWE components n.1, n.2, n.3 -->
  <xsl:template name="coding">
    <xsl:param name="n"/>
    <xsl:param name="at" select="0"/>
    <xsl:element name="{$n}.{1 + $at}"><xsl:value-of select="f:code/@value"/></xsl:element>
    <xsl:if test="f:display/@value"><xsl:element name="{$n}.{2 + $at}"><xsl:value-of select="f:display/@value"/></xsl:element></xsl:if>
    <xsl:call-template name="cwe-system"><xsl:with-param name="n" select="$n"/><xsl:with-param name="at" select="$at"/></xsl:call-template>
  </xsl:template>

  <!-- a Coding's system (context) -> CWE-3, the name of coding system (table 0396) -->
  <xsl:template name="cwe-system">
    <xsl:param name="n"/>
    <xsl:param name="at" select="0"/>
    <xsl:variable name="sys" select="string(f:system/@value)"/>
    <xsl:choose>
      <xsl:when test="$sys = $VISIT_KIND"><xsl:element name="{$n}.{3 + $at}">99CGVK</xsl:element></xsl:when>
      <xsl:when test="$sys = 'http://snomed.info/sct'"><xsl:element name="{$n}.{3 + $at}">SCT</xsl:element></xsl:when>
      <xsl:when test="$sys = 'http://loinc.org'"><xsl:element name="{$n}.{3 + $at}">LN</xsl:element></xsl:when>
      <xsl:when test="starts-with($sys, 'http://terminology.hl7.org/CodeSystem/v2-')"><xsl:element name="{$n}.{3 + $at}">HL7<xsl:value-of select="substring-after($sys, 'v2-')"/></xsl:element></xsl:when>
      <xsl:when test="starts-with($sys, 'urn:oid:')"><xsl:element name="{$n}.{3 + $at}"><xsl:value-of select="substring-after($sys, 'urn:oid:')"/></xsl:element></xsl:when>
    </xsl:choose>
  </xsl:template>

  <!-- instant 2026-12-03T09:00:00+01:00 (or Z) -> DTM 20261203090000+0100 -->
  <xsl:template name="dtm">
    <xsl:param name="i"/>
    <xsl:variable name="base" select="translate(substring($i, 1, 19), '-:T', '')"/>
    <xsl:variable name="tz" select="substring($i, string-length($i) - 5)"/>
    <xsl:value-of select="$base"/>
    <xsl:choose>
      <xsl:when test="substring($i, string-length($i)) = 'Z'">+0000</xsl:when>
      <xsl:when test="substring($tz, 4, 1) = ':'"><xsl:value-of select="concat(substring($tz, 1, 3), substring($tz, 5, 2))"/></xsl:when>
    </xsl:choose>
  </xsl:template>
</xsl:stylesheet>
